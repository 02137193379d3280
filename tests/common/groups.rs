//! The services' consumer groups as Kafka's group coordinator sees them (its admin API: the
//! groups' state, members and assignments), for tests that must know every consumer is in.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio::time::Instant;

/// The services that consume events, each in a group named after it.
pub const CONSUMING_SERVICES: [&str; 5] = ["cart", "order", "payment", "product", "notification"];

/// How the coordinator sees one group: its state and, per member, its client id (the replica)
/// and how many partitions it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub state: String,
    pub members: Vec<(String, usize)>,
}

impl Group {
    /// Stable, with `replicas` members each holding partitions.
    fn whole(&self, replicas: usize) -> bool {
        self.state == "Stable"
            && self.members.len() == replicas
            && self.members.iter().all(|(_, partitions)| *partitions > 0)
    }
}

/// How many processes of each service run (dev/ exports it).
pub fn replicas() -> usize {
    std::env::var("SHOP_DEV_REPLICAS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

/// Every consuming service's group, or why it could not be read.
pub async fn describe() -> Vec<(&'static str, Result<Group, String>)> {
    tokio::task::spawn_blocking(|| {
        let settings = shop_config::Settings::from_env().expect("the settings dev/test exports");
        let client: BaseConsumer = match ClientConfig::new()
            .set("bootstrap.servers", &settings.kafka.brokers)
            .create()
        {
            Ok(client) => client,
            Err(error) => {
                return CONSUMING_SERVICES
                    .map(|service| (service, Err(error.to_string())))
                    .to_vec();
            }
        };
        CONSUMING_SERVICES
            .map(|service| (service, describe_one(&client, service)))
            .to_vec()
    })
    .await
    .expect("describing the groups")
}

fn describe_one(client: &BaseConsumer, group: &str) -> Result<Group, String> {
    let list = client
        .fetch_group_list(Some(group), Duration::from_secs(3))
        .map_err(|error| error.to_string())?;
    let Some(info) = list.groups().iter().find(|info| info.name() == group) else {
        return Ok(Group {
            state: "Dead".to_owned(),
            members: Vec::new(),
        });
    };
    Ok(Group {
        state: info.state().to_owned(),
        members: info
            .members()
            .iter()
            .map(|member| {
                let partitions = member.assignment().map_or(0, assigned_partitions);
                (member.client_id().to_owned(), partitions)
            })
            .collect(),
    })
}

/// Partitions in a consumer protocol assignment (Kafka's `ConsumerProtocolAssignment`: a
/// version, then per topic its name and its partitions, then user data).
pub fn assigned_partitions(assignment: &[u8]) -> usize {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = rest;
        Some(head)
    }
    fn int16(bytes: &mut &[u8]) -> Option<i16> {
        Some(i16::from_be_bytes(take(bytes, 2)?.try_into().ok()?))
    }
    fn int32(bytes: &mut &[u8]) -> Option<i32> {
        Some(i32::from_be_bytes(take(bytes, 4)?.try_into().ok()?))
    }
    let mut bytes = assignment;
    let mut count = || -> Option<usize> {
        int16(&mut bytes)?;
        let mut partitions = 0;
        for _ in 0..int32(&mut bytes)? {
            let name_length = usize::try_from(int16(&mut bytes)?).ok()?;
            take(&mut bytes, name_length)?;
            let topic_partitions = usize::try_from(int32(&mut bytes)?).ok()?;
            take(&mut bytes, topic_partitions * 4)?;
            partitions += topic_partitions;
        }
        Some(partitions)
    };
    count().unwrap_or(0)
}

/// Waits until every consuming service's group is whole — Stable, one member per replica, each
/// holding partitions — and has stayed so for `steady` (longer than a session timeout, so that a
/// member the coordinator still remembers but that no longer heartbeats cannot pass for one).
/// Returns when that steady stretch began, or names every service whose group was not whole
/// at the deadline, and how it looked.
pub async fn wait_until_whole(within: Duration, steady: Duration) -> Result<Instant, String> {
    let replicas = replicas();
    let deadline = Instant::now() + within;
    let mut whole_since: Option<Instant> = None;
    loop {
        let groups = describe().await;
        let broken: Vec<String> = groups
            .iter()
            .filter(|(_, group)| !group.as_ref().is_ok_and(|group| group.whole(replicas)))
            .map(|(service, group)| match group {
                Ok(group) => format!(
                    "{service} (state {}, members {:?})",
                    group.state, group.members
                ),
                Err(error) => format!("{service} ({error})"),
            })
            .collect();
        let now = Instant::now();
        if broken.is_empty() {
            let since = *whole_since.get_or_insert(now);
            if now.duration_since(since) >= steady {
                return Ok(since);
            }
        } else {
            whole_since = None;
            if now >= deadline {
                let mut seen = Vec::new();
                for (service, group) in &groups {
                    if !group.as_ref().is_ok_and(|group| group.whole(replicas)) {
                        seen.push(format!("{service}: {}", watchdog_view(service).await));
                    }
                }
                return Err(format!(
                    "the consumer groups of these services were not whole ({replicas} members \
                     with partitions each) within {}s: {}; their bridges saw: {}",
                    within.as_secs(),
                    broken.join("; "),
                    seen.join("; ")
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a service's bridge watchdog reports on `/metrics` (membership, progress, restarts), to
/// tell a stuck consumer the watchdog missed from one it is about to restart.
async fn watchdog_view(service: &str) -> String {
    let url = format!(
        "{}/metrics",
        super::env(&format!("SHOP_{}_URL", service.to_uppercase())).trim_end_matches('/')
    );
    let Ok(response) = reqwest::get(&url).await else {
        return "no answer on /metrics".to_owned();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| {
            [
                "shop_kafka_consumer_member",
                "shop_kafka_consumer_seconds_since_progress",
                "shop_kafka_consumer_restarts_total",
            ]
            .iter()
            .any(|name| line.starts_with(name))
        })
        .collect::<Vec<_>>()
        .join(", ")
}
