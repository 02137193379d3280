use super::*;

const STUCK_AFTER: Duration = Duration::from_secs(30);

fn member(at: Instant) -> Observed {
    Observed {
        group_state: "up".into(),
        join_state: "steady".into(),
        stats_at: Some(at),
        assigned: 3,
        polling: true,
        ..Observed::new(at)
    }
}

fn out_of_group(at: Instant) -> Observed {
    Observed {
        group_state: "up".into(),
        join_state: "wait-join".into(),
        ..member(at)
    }
}

fn lagging(at: Instant, lag: i64) -> Observed {
    Observed {
        lag: Some(lag),
        lag_at: Some(at),
        ..member(at)
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_member_with_nothing_to_read_is_joined_and_needs_no_probe() {
    let now = Instant::now();
    let mut watchdog = Watchdog::new(STUCK_AFTER);
    let seen = lagging(now, 0);
    assert!(!watchdog.needs_probe(&seen, now));
    assert_eq!(
        watchdog.assess(&seen, now, true),
        Phase::Joined { partitions: 3 }
    );
}

#[test]
fn a_consumer_out_of_its_group_while_the_cluster_answers_is_stuck_after_the_limit() {
    let start = Instant::now();
    let mut watchdog = Watchdog::new(STUCK_AFTER);
    for elapsed in [0, 10, 29] {
        let now = start + secs(elapsed);
        let seen = out_of_group(now);
        assert!(watchdog.needs_probe(&seen, now));
        assert_eq!(
            watchdog.assess(&seen, now, true),
            Phase::Rebalancing {
                for_: secs(elapsed)
            }
        );
    }
    let now = start + secs(30);
    match watchdog.assess(&out_of_group(now), now, true) {
        Phase::Stuck { reason, detail } => {
            assert_eq!(reason, StuckReason::OutOfGroup);
            assert!(detail.contains("join state wait-join"), "{detail}");
        }
        other => panic!("expected stuck, got {other:?}"),
    }
}

#[test]
fn a_broker_that_is_down_stops_the_clock_and_burns_no_restart() {
    let start = Instant::now();
    let mut watchdog = Watchdog::new(STUCK_AFTER);
    // Out of the group for ten minutes, with the cluster unreachable all along.
    for elapsed in (0..600).step_by(5) {
        let now = start + secs(elapsed);
        assert_eq!(
            watchdog.assess(&out_of_group(now), now, false),
            Phase::WaitingForBroker
        );
    }
    // The broker is back: the consumer gets its full allowance from now on.
    let back = start + secs(600);
    assert_eq!(
        watchdog.assess(&out_of_group(back), back, true),
        Phase::Rebalancing { for_: secs(0) }
    );
    let later = back + secs(29);
    assert!(matches!(
        watchdog.assess(&out_of_group(later), later, true),
        Phase::Rebalancing { .. }
    ));
}

#[test]
fn rejoining_in_time_resets_the_clock() {
    let start = Instant::now();
    let mut watchdog = Watchdog::new(STUCK_AFTER);
    watchdog.assess(&out_of_group(start), start, true);
    let joined = start + secs(20);
    assert_eq!(
        watchdog.assess(&member(joined), joined, true),
        Phase::Joined { partitions: 3 }
    );
    let out_again = start + secs(40);
    assert_eq!(
        watchdog.assess(&out_of_group(out_again), out_again, true),
        Phase::Rebalancing { for_: secs(0) }
    );
}

#[test]
fn a_consumer_held_back_by_its_own_handling_is_never_stuck() {
    let start = Instant::now();
    let mut watchdog = Watchdog::new(STUCK_AFTER);
    for elapsed in (0..300).step_by(5) {
        let now = start + secs(elapsed);
        let seen = Observed {
            polling: false,
            ..out_of_group(now)
        };
        assert!(!watchdog.needs_probe(&seen, now));
        assert_eq!(watchdog.assess(&seen, now, true), Phase::Busy);
    }
}

#[test]
fn lag_with_no_message_for_the_limit_is_stuck_but_a_message_restarts_the_clock() {
    let start = Instant::now();
    let mut watchdog = Watchdog::new(STUCK_AFTER);
    let seen = lagging(start, 12);
    assert!(watchdog.needs_probe(&seen, start));
    assert_eq!(
        watchdog.assess(&seen, start, true),
        Phase::Joined { partitions: 3 },
        "a moment behind is no stall yet"
    );
    // A message arrives 20 s in: the stall is counted from it.
    let now = start + secs(40);
    let seen = Observed {
        last_message: Some(start + secs(20)),
        ..lagging(now, 12)
    };
    assert_eq!(
        watchdog.assess(&seen, now, true),
        Phase::Stalled {
            lag: 12,
            for_: secs(20)
        }
    );
    let now = start + secs(50);
    let seen = Observed {
        last_message: Some(start + secs(20)),
        ..lagging(now, 12)
    };
    match watchdog.assess(&seen, now, true) {
        Phase::Stuck { reason, detail } => {
            assert_eq!(reason, StuckReason::NoProgress);
            assert!(detail.starts_with("12 messages behind"), "{detail}");
        }
        other => panic!("expected stuck, got {other:?}"),
    }
}

#[test]
fn stale_statistics_or_lag_do_not_count_as_membership_or_lag() {
    let now = Instant::now();
    let old = now - secs(60);
    let seen = Observed {
        stats_at: Some(old),
        lag: Some(5),
        lag_at: Some(old),
        ..member(now)
    };
    assert!(!seen.member(now), "statistics a minute old");
    assert!(!seen.lagging(now), "a lag measured a minute ago");
}

#[test]
fn the_statistics_document_yields_the_group_state() {
    let health = ConsumerHealth::new();
    let context = BridgeContext {
        health: health.clone(),
        group: "test",
    };
    // An abridged document as librdkafka 2.12 writes it (STATISTICS.md).
    context.stats_raw(
        br#"{"name":"payment#consumer-1","type":"consumer","ts":1,
             "brokers":{},
             "topics":{"shop.orders":{"topic":"shop.orders","partitions":{
                "0":{"partition":0,"committed_offset":42,"app_offset":40},
                "1":{"partition":1,"committed_offset":-1001},
                "-1":{"partition":-1,"committed_offset":-1001}}}},
             "cgrp":{"state":"up","stateage":1200,"join_state":"steady","rebalance_age":900,
                     "rebalance_cnt":2,"rebalance_reason":"group rejoin","assignment_size":3}}"#,
    );
    let seen = health.view();
    assert_eq!(
        (seen.group_state.as_str(), seen.join_state.as_str()),
        ("up", "steady")
    );
    assert_eq!(
        seen.committed,
        HashMap::from([(("shop.orders".to_owned(), 0), 42)]),
        "only partitions with a committed offset"
    );
    assert!(
        Observed {
            polling: true,
            ..seen
        }
        .member(Instant::now())
    );
}
