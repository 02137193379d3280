//! The work a run cost, read from the parts themselves before and after it: PostgreSQL's
//! `pg_stat_database`, `pg_stat_statements` and `pg_stat_wal`, each service's `/metrics` (events
//! published and consumed, HTTP requests handled), and the CPU time of every process of the system
//! from `/proc`. `shop bench checkout` divides the difference by the orders paid.

use std::collections::BTreeMap;
use std::time::Instant;

use shop_config::Settings;
use sqlx::{Connection, PgConnection, Row};

/// Linux reports process times in clock ticks of `USER_HZ`, which is 100 on every architecture
/// Linux supports today (the kernel converts from its own tick rate).
const TICKS_PER_SECOND: f64 = 100.0;

/// Counters of one database.
#[derive(Clone, Copy, Default, Debug)]
pub struct DatabaseWork {
    pub commits: f64,
    pub rollbacks: f64,
    /// Statements that do something (pg_stat_statements calls other than transaction control).
    pub statements: f64,
    /// Every statement the server executed, BEGIN and COMMIT included: one client round trip each.
    pub round_trips: f64,
}

/// Counters of one service, summed over its `/metrics`.
#[derive(Clone, Copy, Default, Debug)]
pub struct ServiceWork {
    pub published: f64,
    pub consumed: f64,
    pub http_requests: f64,
}

#[derive(Clone, Default)]
pub struct WorkSnapshot {
    at: Option<Instant>,
    databases: BTreeMap<String, DatabaseWork>,
    /// `pg_stat_wal`: WAL flushes to disk (fdatasync) for the whole cluster.
    wal_syncs: f64,
    services: BTreeMap<&'static str, ServiceWork>,
    /// CPU seconds (user + system, with reaped children) per part of the system.
    cpu: BTreeMap<String, f64>,
    /// Busy and total CPU seconds of the whole machine, from /proc/stat.
    machine: (f64, f64),
    /// Why a source could not be read, said once in the table rather than failing the bench.
    missing: Vec<String>,
}

/// What the run cost: `after - before`.
pub struct Work {
    pub seconds: f64,
    pub databases: BTreeMap<String, DatabaseWork>,
    pub wal_syncs: f64,
    pub services: BTreeMap<&'static str, ServiceWork>,
    pub cpu: BTreeMap<String, f64>,
    pub machine_busy: f64,
    pub machine_total: f64,
    pub missing: Vec<String>,
}

impl WorkSnapshot {
    pub async fn take(settings: &Settings, client: &reqwest::Client) -> WorkSnapshot {
        let mut snapshot = WorkSnapshot {
            at: Some(Instant::now()),
            ..WorkSnapshot::default()
        };
        if let Err(error) = snapshot.read_postgres(settings).await {
            snapshot
                .missing
                .push(format!("PostgreSQL statistics: {error}"));
        }
        for (service, url) in services(settings) {
            match service_work(client, &url).await {
                Ok(work) => {
                    snapshot.services.insert(service, work);
                }
                Err(error) => snapshot
                    .missing
                    .push(format!("{service} /metrics at {url}: {error}")),
            }
        }
        snapshot.cpu = process_cpu();
        snapshot.machine = machine_cpu().unwrap_or_default();
        snapshot
    }

    async fn read_postgres(&mut self, settings: &Settings) -> Result<(), sqlx::Error> {
        let mut connection = PgConnection::connect(settings.postgres.url.as_str()).await?;
        let rows = sqlx::query(
            "select datname, xact_commit::float8, xact_rollback::float8 from pg_stat_database
             where datname is not null and datname not in ('postgres', 'template0', 'template1')",
        )
        .fetch_all(&mut connection)
        .await?;
        for row in rows {
            let database = self.databases.entry(row.try_get(0)?).or_default();
            database.commits = row.try_get(1)?;
            database.rollbacks = row.try_get(2)?;
        }
        let statements = sqlx::query(
            "select d.datname,
                    sum(s.calls)::float8,
                    coalesce(sum(s.calls) filter (where s.query !~* '^\\s*(begin|commit|rollback|start transaction|savepoint|release)'), 0)::float8
             from pg_stat_statements s join pg_database d on d.oid = s.dbid
             group by d.datname",
        )
        .fetch_all(&mut connection)
        .await;
        match statements {
            Ok(rows) => {
                for row in rows {
                    let name: String = row.try_get(0)?;
                    if let Some(database) = self.databases.get_mut(&name) {
                        database.round_trips = row.try_get(1)?;
                        database.statements = row.try_get(2)?;
                    }
                }
            }
            Err(error) => self.missing.push(format!(
                "pg_stat_statements (dev/ loads and creates it): {error}"
            )),
        }
        self.wal_syncs = sqlx::query_scalar("select wal_sync::float8 from pg_stat_wal")
            .fetch_one(&mut connection)
            .await?;
        let _ = connection.close().await;
        Ok(())
    }

    /// `self` taken after `before`.
    pub fn since(&self, before: &WorkSnapshot) -> Work {
        let seconds = match (self.at, before.at) {
            (Some(after), Some(before)) => after.duration_since(before).as_secs_f64(),
            _ => 0.0,
        };
        let databases = self
            .databases
            .iter()
            .map(|(name, after)| {
                let was = before.databases.get(name).copied().unwrap_or_default();
                let work = DatabaseWork {
                    commits: after.commits - was.commits,
                    rollbacks: after.rollbacks - was.rollbacks,
                    statements: after.statements - was.statements,
                    round_trips: after.round_trips - was.round_trips,
                };
                (name.clone(), work)
            })
            .collect();
        let services = self
            .services
            .iter()
            .map(|(name, after)| {
                let was = before.services.get(name).copied().unwrap_or_default();
                let work = ServiceWork {
                    published: after.published - was.published,
                    consumed: after.consumed - was.consumed,
                    http_requests: after.http_requests - was.http_requests,
                };
                (*name, work)
            })
            .collect();
        let cpu = self
            .cpu
            .iter()
            .map(|(name, after)| {
                let was = before.cpu.get(name).copied().unwrap_or_default();
                (name.clone(), (after - was).max(0.0))
            })
            .collect();
        let mut missing = before.missing.clone();
        missing.extend(self.missing.iter().cloned());
        missing.dedup();
        Work {
            seconds,
            databases,
            wal_syncs: self.wal_syncs - before.wal_syncs,
            services,
            cpu,
            machine_busy: self.machine.0 - before.machine.0,
            machine_total: self.machine.1 - before.machine.1,
            missing,
        }
    }
}

impl Work {
    /// The table of work per `unit` (e.g. per paid order), in markdown.
    pub fn print_per(&self, units: usize, unit: &str) {
        let n = units.max(1) as f64;
        println!(
            "\n  work per {unit} ({units} in {:.1} s; machine CPU busy {:.0}% of {:.1} cores)\n",
            self.seconds,
            100.0 * self.machine_busy / self.machine_total.max(0.001),
            self.machine_total / self.seconds.max(0.001),
        );
        println!("  | PostgreSQL database | commits | rollbacks | statements | round trips |");
        println!("  |---|---:|---:|---:|---:|");
        let mut total = DatabaseWork::default();
        for (name, work) in &self.databases {
            if work.commits + work.statements < 1.0 {
                continue;
            }
            println!(
                "  | {name} | {:.2} | {:.2} | {:.2} | {:.2} |",
                work.commits / n,
                work.rollbacks / n,
                work.statements / n,
                work.round_trips / n
            );
            total.commits += work.commits;
            total.rollbacks += work.rollbacks;
            total.statements += work.statements;
            total.round_trips += work.round_trips;
        }
        println!(
            "  | **all** (WAL fsyncs {:.2}) | {:.2} | {:.2} | {:.2} | {:.2} |\n",
            self.wal_syncs / n,
            total.commits / n,
            total.rollbacks / n,
            total.statements / n,
            total.round_trips / n
        );
        println!("  | service | events published | events consumed | HTTP requests handled |");
        println!("  |---|---:|---:|---:|");
        let mut sum = ServiceWork::default();
        for (name, work) in &self.services {
            println!(
                "  | {name} | {:.2} | {:.2} | {:.2} |",
                work.published / n,
                work.consumed / n,
                work.http_requests / n
            );
            sum.published += work.published;
            sum.consumed += work.consumed;
            sum.http_requests += work.http_requests;
        }
        println!(
            "  | **all** | {:.2} | {:.2} | {:.2} |\n",
            sum.published / n,
            sum.consumed / n,
            sum.http_requests / n
        );
        println!("  | process | CPU ms per {unit} | share |");
        println!("  |---|---:|---:|");
        let all: f64 = self.cpu.values().sum();
        let mut by_cost: Vec<_> = self.cpu.iter().filter(|(_, s)| **s > 0.0).collect();
        by_cost.sort_by(|a, b| b.1.total_cmp(a.1));
        for (name, seconds) in by_cost {
            println!(
                "  | {name} | {:.2} | {:.0}% |",
                seconds * 1000.0 / n,
                100.0 * seconds / all.max(0.001)
            );
        }
        println!("  | **all** | {:.2} | |", all * 1000.0 / n);
        for missing in &self.missing {
            println!("  (not measured: {missing})");
        }
    }
}

fn services(settings: &Settings) -> Vec<(&'static str, String)> {
    let url = |url: &shop_config::Url| url.as_str().trim_end_matches('/').to_owned();
    vec![
        ("user", url(&settings.auth.user_service_url)),
        ("product", url(&settings.product.url)),
        ("cart", url(&settings.cart.url)),
        ("order", url(&settings.order.url)),
        ("payment", url(&settings.payment.url)),
        ("notification", url(&settings.notification.url)),
    ]
}

async fn service_work(client: &reqwest::Client, url: &str) -> Result<ServiceWork, reqwest::Error> {
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok(ServiceWork {
        published: sum_of(&text, "shop_events_published_total"),
        consumed: sum_of(&text, "shop_events_consumed_total"),
        http_requests: sum_of(&text, "shop_http_requests_total"),
    })
}

/// The sum of every series of `metric` in a Prometheus text exposition.
fn sum_of(text: &str, metric: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(metric)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// CPU seconds so far of every process that is part of the system, by part: `shop serve <role>`
/// per role, this bench, PostgreSQL (all backends), FerretDB, Kafka, nginx, Mailpit.
fn process_cpu() -> BTreeMap<String, f64> {
    let mut cpu = BTreeMap::new();
    let me = std::process::id().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return cpu;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let command = head.split_once('(').map_or("", |(_, name)| name);
        // After the command: state, ppid, …; utime, stime, cutime, cstime are fields 14-17.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = fields
            .get(11..15)
            .map(|times| times.iter().filter_map(|t| t.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        let arguments = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let arguments: Vec<String> = arguments
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(part) = part_of(pid == me, command, &arguments) else {
            continue;
        };
        *cpu.entry(part).or_insert(0.0) += ticks / TICKS_PER_SECOND;
    }
    cpu
}

fn part_of(is_me: bool, command: &str, arguments: &[String]) -> Option<String> {
    if is_me {
        return Some("shop bench (the shoppers)".to_owned());
    }
    let has = |word: &str| arguments.iter().any(|a| a.contains(word));
    match command {
        "shop" => {
            let role = arguments
                .iter()
                .position(|a| a == "serve")
                .and_then(|at| arguments.get(at + 1))?;
            Some(format!("shop serve {role}"))
        }
        "postgres" => Some("postgres".to_owned()),
        "ferretdb" => Some("ferretdb".to_owned()),
        "nginx" => Some("nginx".to_owned()),
        "mailpit" => Some("mailpit".to_owned()),
        "java" if has("kafka") => Some("kafka".to_owned()),
        _ => None,
    }
}

/// Busy and total CPU seconds of the machine since boot.
fn machine_cpu() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .filter_map(|t| t.parse().ok())
        .collect();
    let total: f64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3).copied().unwrap_or(0.0) + ticks.get(4).copied().unwrap_or(0.0);
    Some(((total - idle) / TICKS_PER_SECOND, total / TICKS_PER_SECOND))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_every_series_of_a_metric_and_no_other() {
        let text = "# HELP shop_http_requests_total x\n\
                    shop_http_requests_total{service=\"order\",status=\"201\"} 12\n\
                    shop_http_requests_total{service=\"order\",status=\"409\"} 3\n\
                    shop_http_requests_total_other 100\n\
                    shop_events_published_total 7\n";
        assert_eq!(sum_of(text, "shop_http_requests_total"), 15.0);
        assert_eq!(sum_of(text, "shop_events_published_total"), 7.0);
        assert_eq!(sum_of(text, "shop_events_consumed_total"), 0.0);
    }

    #[test]
    fn names_the_parts_of_the_system() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            part_of(false, "shop", &args(&["/x/shop", "serve", "order"])).as_deref(),
            Some("shop serve order")
        );
        assert_eq!(part_of(false, "shop", &args(&["/x/shop", "tree"])), None);
        assert_eq!(
            part_of(
                false,
                "java",
                &args(&["java", "-cp", "/k/kafka/libs", "kafka.Kafka"])
            )
            .as_deref(),
            Some("kafka")
        );
        assert_eq!(part_of(false, "bash", &args(&["bash"])), None);
        assert!(process_cpu().contains_key("shop bench (the shoppers)"));
    }
}
