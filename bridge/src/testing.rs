//! For tests of the watchdog: a way to keep a bridge's consumer out of its group for real.
//!
//! A [`GroupBlocker`] joins a group with an assignment strategy the bridge's consumer does not
//! speak (`cooperative-sticky` against librdkafka's default `range,roundrobin`). While it is a
//! member, every JoinGroup of a bridge's consumer is refused with INCONSISTENT_GROUP_PROTOCOL,
//! while metadata requests succeed: the outward shape of a consumer wedged after its coordinator
//! went away. It stores no offset, so it commits nothing on the group's behalf.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use shop_config::KafkaSettings;

use crate::kafka::{self, BridgeError};

/// A member holding `group` so that no bridge's consumer can join it; it leaves when told.
pub struct GroupBlocker {
    consumer: Arc<StreamConsumer>,
    polling: tokio::task::JoinHandle<()>,
}

impl GroupBlocker {
    /// Joins `group`, subscribed to `topics`, and returns once it holds partitions (an empty
    /// group is needed: with a bridge already in it, the blocker is the one refused).
    pub async fn hold(
        settings: &KafkaSettings,
        group: &str,
        topics: &[&str],
        within: Duration,
    ) -> Result<Self, BridgeError> {
        let consumer: StreamConsumer = kafka::consumer_config(settings, group)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create()?;
        consumer.subscribe(topics)?;
        let consumer = Arc::new(consumer);
        // Polled all along, so that it keeps its membership; what it reads is dropped unstored.
        let polled = consumer.clone();
        let polling = tokio::spawn(async move {
            loop {
                let _ = polled.recv().await;
            }
        });
        let blocker = Self { consumer, polling };
        let deadline = tokio::time::Instant::now() + within;
        while blocker.consumer.assignment().map_or(0, |a| a.count()) == 0 {
            if tokio::time::Instant::now() >= deadline {
                blocker.leave().await;
                return Err(BridgeError::Group(format!(
                    "the blocker did not get into {group} within {}s",
                    within.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(blocker)
    }

    /// Leaves the group (closing blocks, so off the runtime's threads).
    pub async fn leave(self) {
        self.polling.abort();
        let _ = self.polling.await;
        let consumer = self.consumer;
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
}
