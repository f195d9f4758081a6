//! Several processes (machines) training one model: burn-collective's all-reduce behind
//! core's [`Ranks`]. Each process runs the same command with `--nodes N --node-rank K
//! --coordinator HOST:PORT`; rank 0 hosts burn-collective's orchestrator at the coordinator's
//! port, and every rank serves its tensors to the others peer to peer on a port of its own.

use std::net::{IpAddr, SocketAddr, TcpListener, ToSocketAddrs, UdpSocket};
use std::str::FromStr;
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::TensorPrimitive;
use burn_collective::{CollectiveConfig, PeerId, ReduceOperation};
use burn_communication::Address;
use clap::Args as ClapArgs;
use xtal_core::train::{Ranks, RanksError};

use crate::exit::BadInput;

/// How long a rank waits for every rank to reach the coordinator.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);
/// How long leaving the run may take (every rank has done its last sum by then).
const LEAVE_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(ClapArgs, Debug, Clone, Default)]
pub struct NodeArgs {
    /// Train data-parallel over N processes, one per machine (or per device), each running
    /// this command with its own --node-rank. training.batch_size stays the global batch:
    /// each rank takes batch_size / N of every batch.
    #[arg(long, value_name = "N")]
    pub nodes: Option<usize>,
    /// This process's rank, 0 to N−1. Rank 0 hosts the coordinator and alone writes the run.
    #[arg(long, value_name = "K")]
    pub node_rank: Option<usize>,
    /// Rank 0's HOST:PORT, the same for every rank.
    #[arg(long, value_name = "HOST:PORT")]
    pub coordinator: Option<String>,
    /// Where the other ranks reach this one (HOST:PORT; default: this machine's address
    /// towards the coordinator, port = the coordinator's + 1 + rank).
    #[arg(long, value_name = "HOST:PORT")]
    pub node_address: Option<String>,
}

/// A data-parallel run's settings, checked.
#[derive(Debug, Clone)]
pub struct NodePlan {
    pub nodes: usize,
    pub rank: usize,
    coordinator: String,
    coordinator_port: u16,
    node_host: String,
    node_port: u16,
}

impl NodeArgs {
    /// The run's plan; `None` for one process.
    pub fn plan(&self) -> anyhow::Result<Option<NodePlan>> {
        let bad = |m: String| -> anyhow::Error { BadInput(m).into() };
        let Some(nodes) = self.nodes else {
            for (given, flag) in [
                (self.node_rank.is_some(), "--node-rank"),
                (self.coordinator.is_some(), "--coordinator"),
                (self.node_address.is_some(), "--node-address"),
            ] {
                if given {
                    return Err(bad(format!("{flag} needs --nodes")));
                }
            }
            return Ok(None);
        };
        if nodes == 0 {
            return Err(bad("--nodes must be at least 1".into()));
        }
        if nodes == 1 {
            return Ok(None);
        }
        let rank = self.node_rank.ok_or_else(|| {
            bad(format!(
                "--nodes {nodes} needs --node-rank (0 to {})",
                nodes - 1
            ))
        })?;
        if rank >= nodes {
            return Err(bad(format!(
                "--node-rank {rank}: ranks of --nodes {nodes} are 0 to {}",
                nodes - 1
            )));
        }
        let coordinator = self
            .coordinator
            .clone()
            .ok_or_else(|| bad(format!("--nodes {nodes} needs --coordinator HOST:PORT")))?;
        let (_, coordinator_port) = host_port(&coordinator, "--coordinator")?;
        let (node_host, node_port) = match &self.node_address {
            Some(a) => host_port(a, "--node-address")?,
            None => {
                let port = usize::from(coordinator_port) + 1 + rank;
                let port = u16::try_from(port).map_err(|_| {
                    bad(format!(
                        "--coordinator {coordinator}: port {port} for rank {rank} is past 65535; \
                         give --node-address"
                    ))
                })?;
                (reaching_address(&coordinator)?.to_string(), port)
            }
        };
        Ok(Some(NodePlan {
            nodes,
            rank,
            coordinator,
            coordinator_port,
            node_host,
            node_port,
        }))
    }

    /// [`Self::plan`] for a run whose global batch is `batch_size` (`key` names the setting),
    /// checked to split evenly over the ranks, and whether this process leads: rank 0 alone
    /// writes the run, the other ranks only train (and read it to resume).
    pub fn plan_for_batch(
        &self,
        batch_size: usize,
        key: &str,
    ) -> anyhow::Result<(Option<NodePlan>, bool)> {
        let plan = self.plan()?;
        if let Some(plan) = &plan {
            plan.check_batch(batch_size, key)?;
        }
        let lead = plan.as_ref().is_none_or(|p| p.rank == 0);
        Ok((plan, lead))
    }
}

/// What a rank other than 0 says when its part is done (`what`: e.g. "after epoch 3").
pub fn say_done(plan: Option<&NodePlan>, what: &str) {
    let rank = plan.map_or(0, |p| p.rank);
    eprintln!("rank {rank} done{what} (rank 0 writes the run)");
}

impl NodePlan {
    /// Checks a global batch splits evenly over the ranks (`key` names the setting).
    pub fn check_batch(&self, batch_size: usize, key: &str) -> anyhow::Result<()> {
        if !batch_size.is_multiple_of(self.nodes) {
            return Err(BadInput(format!(
                "{key} = {batch_size} does not split evenly over --nodes {}; the global batch \
                 must be a multiple of the ranks",
                self.nodes
            ))
            .into());
        }
        Ok(())
    }
}

/// `HOST:PORT` split and checked.
fn host_port(text: &str, flag: &str) -> anyhow::Result<(String, u16)> {
    let bad = || BadInput(format!("{flag} {text}: expected HOST:PORT"));
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 {
        return Err(bad().into());
    }
    Ok((host.to_string(), port))
}

/// The address this machine reaches `coordinator` from (no packet is sent: a UDP socket
/// is only connected, which picks the route).
fn reaching_address(coordinator: &str) -> anyhow::Result<IpAddr> {
    let target: SocketAddr = coordinator
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| BadInput(format!("--coordinator {coordinator}: cannot resolve")))?;
    let any = if target.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(any)?;
    socket
        .connect(target)
        .map_err(|e| BadInput(format!("--coordinator {coordinator}: no route ({e})")))?;
    Ok(socket.local_addr()?.ip())
}

/// This process's place among the ranks: one process, or a member of a burn-collective run
/// (registered for backend `B`, the one its sums use).
pub struct NodeRanks {
    rank: usize,
    world: usize,
    member: Option<Member>,
}

struct Member {
    peer: PeerId,
    finish: fn(PeerId) -> Result<(), burn_collective::CollectiveError>,
}

impl NodeRanks {
    /// Joins the run of `plan` (none: one process) with `device`, the backend `B` every sum
    /// will use; waits for every rank.
    pub fn join<B: Backend>(plan: Option<&NodePlan>, device: B::Device) -> anyhow::Result<Self> {
        let Some(plan) = plan else {
            return Ok(Self {
                rank: 0,
                world: 1,
                member: None,
            });
        };
        if plan.rank == 0 {
            start_coordinator(plan)?;
        }
        let peer = PeerId(plan.rank as u32);
        let address = |s: String| Address::from_str(&s).map_err(anyhow::Error::msg);
        let config = CollectiveConfig::default()
            .with_num_devices(1)
            .with_num_nodes(plan.nodes as u32)
            .with_global_address(address(format!("ws://{}", plan.coordinator))?)
            .with_node_address(address(format!(
                "ws://{}:{}",
                plan.node_host, plan.node_port
            ))?)
            .with_data_service_port(plan.node_port);
        eprintln!(
            "data-parallel: rank {} of {}, coordinator {}, this rank at {}:{}; waiting for every rank",
            plan.rank, plan.nodes, plan.coordinator, plan.node_host, plan.node_port
        );
        // Registration waits for every rank: a rank that never comes must not hang the others.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(burn_collective::register::<B>(peer, device, config));
        });
        match receiver.recv_timeout(JOIN_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("data-parallel: joining the coordinator failed: {e:?}"),
            Err(_) => anyhow::bail!(
                "data-parallel: not every one of the {} ranks reached the coordinator at {} \
                 within {} s",
                plan.nodes,
                plan.coordinator,
                JOIN_TIMEOUT.as_secs()
            ),
        }
        Ok(Self {
            rank: plan.rank,
            world: plan.nodes,
            member: Some(Member {
                peer,
                finish: burn_collective::finish_collective::<B>,
            }),
        })
    }

    /// Leaves the run (every rank, after its last sum). Rank 0, whose process hosts the
    /// coordinator, then waits for every other rank to have left: a rank whose leaving
    /// reaches a coordinator that is gone waits for an answer forever.
    pub fn finish(self) -> anyhow::Result<()> {
        let Some(m) = self.member else {
            return Ok(());
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send((m.finish)(m.peer));
        });
        match receiver.recv_timeout(LEAVE_TIMEOUT) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => anyhow::bail!("data-parallel: leaving the run failed: {e:?}"),
            Err(_) => anyhow::bail!(
                "data-parallel: rank {}'s training is done, but the coordinator did not answer                  its leaving within {} s (rank 0 gone?)",
                self.rank,
                LEAVE_TIMEOUT.as_secs()
            ),
        }
        if self.rank == 0 {
            let start = std::time::Instant::now();
            while burn_collective::registered_nodes() > 0 {
                if start.elapsed() > LEAVE_TIMEOUT {
                    eprintln!(
                        "data-parallel: warning: {} rank(s) did not leave the run within {} s",
                        burn_collective::registered_nodes(),
                        LEAVE_TIMEOUT.as_secs()
                    );
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        Ok(())
    }
}

impl Ranks for NodeRanks {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world(&self) -> usize {
        self.world
    }

    fn sum<B: Backend>(&self, x: Tensor<B, 1>) -> Result<Tensor<B, 1>, RanksError> {
        let Some(m) = &self.member else {
            return Ok(x);
        };
        // The ring all-reduce cuts a tensor into one slice per rank: a shorter one is padded.
        let n = x.dims()[0];
        let x = if n < self.world {
            let pad = Tensor::zeros([self.world - n], &x.device());
            Tensor::cat(vec![x, pad], 0)
        } else {
            x
        };
        let sum = burn_collective::all_reduce::<B>(
            m.peer,
            x.into_primitive().tensor(),
            ReduceOperation::Sum,
        )
        .map_err(|e| {
            RanksError(format!(
                "the all-reduce with the other ranks failed ({e:?}): a rank stopped, or the \
                 network between them failed"
            ))
        })?;
        let sum = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(sum));
        Ok(if n < self.world {
            sum.narrow(0, 0, n)
        } else {
            sum
        })
    }
}

/// burn-collective's orchestrator on the coordinator's port, in a thread of rank 0's process
/// for the life of the process. It takes over SIGINT and SIGTERM to stop itself; when it
/// stops, the process ends as it would have.
fn start_coordinator(plan: &NodePlan) -> anyhow::Result<()> {
    let port = plan.coordinator_port;
    // The orchestrator only logs a port it cannot open; find out first.
    drop(TcpListener::bind(("0.0.0.0", port)).map_err(|e| {
        BadInput(format!(
            "--coordinator {}: cannot listen on port {port} ({e})",
            plan.coordinator
        ))
    })?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    std::thread::spawn(move || {
        runtime.block_on(burn_collective::start_global_orchestrator(port));
        eprintln!("data-parallel: the coordinator stopped (interrupted)");
        std::process::exit(130);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};
    use std::time::Instant;

    use super::*;
    use xtal_core::device::Flex;

    /// Set in the two child processes this test starts: "rank,coordinator port,own port".
    const CHILD: &str = "XTAL_TEST_ALL_REDUCE_CHILD";
    const NAME: &str = "collective::tests::many_small_all_reduces_in_a_row_sum_exactly";
    const SUMS: usize = 600;

    /// Rank `rank`'s vector for sum `i`: known to both ranks, so each checks the exact sum.
    /// Lengths 1 to 37 (1 is shorter than the ranks: the padded path), and every 50th a
    /// large one, so that quick and slow transfers follow each other.
    fn values(rank: usize, i: usize) -> Vec<f32> {
        let n = if i % 50 == 49 {
            200_003
        } else {
            1 + (i * 7) % 37
        };
        (0..n)
            .map(|j| ((rank * 7919 + i * 104_729 + j) as f32 * 0.618).sin())
            .collect()
    }

    fn run_rank(rank: usize, coordinator: u16, own: u16) {
        let plan = NodeArgs {
            nodes: Some(2),
            node_rank: Some(rank),
            coordinator: Some(format!("127.0.0.1:{coordinator}")),
            node_address: Some(format!("127.0.0.1:{own}")),
        }
        .plan()
        .unwrap()
        .unwrap();
        let device = Default::default();
        let ranks = NodeRanks::join::<Flex>(Some(&plan), device).unwrap();
        for i in 0..SUMS {
            let mine = values(rank, i);
            let want: Vec<f32> = values(0, i)
                .iter()
                .zip(values(1, i))
                .map(|(a, b)| a + b)
                .collect();
            let x =
                Tensor::<Flex, 1>::from_data(TensorData::new(mine.clone(), [mine.len()]), &device);
            let got = ranks.sum(x).unwrap().into_data().to_vec::<f32>().unwrap();
            assert!(
                got == want,
                "sum {i} ({} values) on rank {rank} is not the exact sum",
                mine.len()
            );
        }
        ranks.finish().unwrap();
        eprintln!("rank {rank}: {SUMS} exact sums");
    }

    /// Many all-reduces back to back through burn-collective (two processes on 127.0.0.1,
    /// as `--nodes 2` runs them), each checked for the exact sum (the ring reuses its transfer
    /// ids for every all-reduce and only its barrier keeps consecutive ones apart), then both
    /// leave the run. Rank 0 used to exit first about one time in twenty, taking the
    /// coordinator with it, and rank 1 then waited for its leaving to be answered forever.
    #[test]
    fn many_small_all_reduces_in_a_row_sum_exactly() {
        if let Ok(child) = std::env::var(CHILD) {
            let v: Vec<usize> = child.split(',').map(|s| s.parse().unwrap()).collect();
            run_rank(v[0], v[1] as u16, v[2] as u16);
            return;
        }
        let held: Vec<TcpListener> = (0..3)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<u16> = held
            .iter()
            .map(|l| l.local_addr().unwrap().port())
            .collect();
        drop(held);
        let exe = std::env::current_exe().unwrap();
        let log = |rank: usize| {
            std::env::temp_dir().join(format!(
                "xtal-{}-all-reduce-rank{rank}.log",
                std::process::id()
            ))
        };
        let mut children: Vec<_> = (0..2)
            .map(|rank| {
                Command::new(&exe)
                    .args(["--exact", NAME, "--nocapture", "--test-threads=1"])
                    .env(CHILD, format!("{rank},{},{}", ports[0], ports[1 + rank]))
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(log(rank)).unwrap())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let start = Instant::now();
        let mut codes = vec![None; 2];
        while codes.iter().any(Option::is_none) && start.elapsed() < Duration::from_secs(120) {
            for (code, child) in codes.iter_mut().zip(&mut children) {
                if code.is_none() {
                    *code = child.try_wait().unwrap().map(|s| s.success());
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut report = String::new();
        for (rank, child) in children.iter_mut().enumerate() {
            let _ = child.kill();
            let _ = child.wait();
            let text = std::fs::read_to_string(log(rank)).unwrap_or_default();
            let _ = std::fs::remove_file(log(rank));
            report.push_str(&format!("--- rank {rank}:\n{text}\n"));
        }
        // A child that ran no test (a renamed test) would succeed too.
        let done = (0..2).all(|rank| report.contains(&format!("rank {rank}: {SUMS} exact sums")));
        // Leaving must be quiet too: a rank whose coordinator vanished panicked in a task.
        let done = done && !report.contains("panicked");
        assert!(
            done && codes.iter().all(|c| *c == Some(true)),
            "{SUMS} all-reduces in two processes: {codes:?} after {:.0?}\n{report}",
            start.elapsed()
        );
    }
}
