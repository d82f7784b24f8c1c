//! Training across machines (feature `collective`), as processes on one machine: an
//! orchestrator and two nodes running the `imagenet` example's teacher stage on a tiny folder.
//! Both nodes must see half of every batch and end with the same weights. When one node is
//! killed or stalls, the other ends within the timeout with an error naming it and the step,
//! without a panic; the group resumes from the newest checkpoint both hold to the result of
//! the uninterrupted run.
#![cfg(feature = "collective")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::tensor::{Tensor, Tolerance};
use common::example_binary;
use sskd::models::create_model;
use sskd::models::import::load_weights;

/// How long the two nodes may take together (a few seconds here); past it they are killed and
/// the test fails with what they printed, instead of hanging CI on a stuck all-reduce.
const NODES_DEADLINE: Duration = Duration::from_secs(300);

/// `N` distinct free ports: every listener is held until all are chosen, so none repeats.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|i| listeners[i].local_addr().unwrap().port())
}

/// A child process that is killed however the test ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A node process, its stdout and stderr going to `log`.
struct Node {
    process: KillOnDrop,
    log: PathBuf,
}

impl Node {
    fn spawn(command: &mut Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Self {
            process: KillOnDrop(child),
            log,
        }
    }

    fn printed(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Waits until every node has exited successfully; fails with the nodes' output if one fails
/// or if they are not all done by `deadline` (then they are killed on drop).
fn wait_for(nodes: &mut [Node], deadline: Duration) {
    let started = Instant::now();
    let mut exited = vec![None; nodes.len()];
    while exited.iter().any(Option::is_none) {
        for (node, status) in nodes.iter_mut().zip(&mut exited) {
            if status.is_none() {
                *status = node.process.0.try_wait().unwrap();
            }
        }
        let everything_printed = || {
            nodes
                .iter()
                .enumerate()
                .map(|(rank, node)| format!("--- node {rank}:\n{}", node.printed()))
                .collect::<String>()
        };
        assert!(
            started.elapsed() < deadline,
            "the nodes did not finish within {deadline:?}:\n{}",
            everything_printed()
        );
        if let Some(status) = exited.iter().flatten().find(|status| !status.success()) {
            panic!("a node failed ({status}):\n{}", everything_printed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tiny_folder(root: &Path) {
    for (class, wnid) in ["n01", "n02"].iter().enumerate() {
        for (split, count) in [("train", 6u32), ("val", 2)] {
            let dir = root.join(split).join(wnid);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..count {
                let image = image::RgbImage::from_fn(36, 36, |x, y| {
                    let shade = (90 * class as u32 + 3 * x + 5 * y + 11 * i) % 256;
                    image::Rgb([shade as u8, 40, (255 - shade) as u8])
                });
                image.save(dir.join(format!("{wnid}_{i}.png"))).unwrap();
            }
        }
    }
}

/// An orchestrator on a free port, and its address.
fn start_orchestrator() -> (KillOnDrop, String) {
    let [port] = free_ports();
    let orchestrator = KillOnDrop(
        Command::new(example_binary("imagenet"))
            .args(["orchestrator", "--port", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the orchestrator did not start"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    (orchestrator, format!("ws://127.0.0.1:{port}"))
}

/// Two nodes of the teacher stage (resnet18 at 32 px, batches of 4, two images each per node)
/// on `data`, writing to `dir/{name}{rank}`, with `extra` arguments.
fn start_group(dir: &Path, data: &Path, name: &str, extra: &[&str]) -> (KillOnDrop, Vec<Node>) {
    let (orchestrator, address) = start_orchestrator();
    let data_ports: [u16; 2] = free_ports();
    let nodes = data_ports
        .into_iter()
        .enumerate()
        .map(|(rank, data_port)| {
            let mut command = Command::new(example_binary("imagenet"));
            command
                .args([
                    "teacher",
                    "--image-size",
                    "32",
                    "--teacher-arch",
                    "resnet18",
                ])
                .args(["--set", "num_classes=2", "--set", "batch_size=4"])
                .args(["--set", "test_batch_size=2"])
                .args(extra)
                .arg("--data")
                .arg(data)
                .arg("--out")
                .arg(dir.join(format!("{name}{rank}")))
                .args(["--nodes", "2", "--node-rank", &rank.to_string()])
                .args(["--orchestrator", &address])
                .args(["--node-address", &format!("ws://127.0.0.1:{data_port}")])
                .args(["--data-port", &data_port.to_string()])
                .stdin(Stdio::null());
            Node::spawn(&mut command, dir.join(format!("{name}{rank}.log")))
        })
        .collect();
    (orchestrator, nodes)
}

/// The logits of each node's `teacher-last.mpk` under `dir/{name}{rank}` on a probe.
fn last_logits(dir: &Path, name: &str) -> Vec<Tensor<Flex, 2>> {
    let device = Default::default();
    let probe = Tensor::<Flex, 4>::ones([2, 3, 32, 32], &device);
    (0..2)
        .map(|rank| {
            let out = dir.join(format!("{name}{rank}"));
            let model = create_model::<Flex>("resnet18", 2, &device).unwrap();
            let model = load_weights(model, &out.join("teacher-last.mpk"), &device).unwrap();
            model.forward(probe.clone()).logits
        })
        .collect()
}

#[test]
fn two_nodes_train_on_halves_of_each_batch_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    tiny_folder(&data);
    let (_orchestrator, mut nodes) = start_group(
        dir.path(),
        &data,
        "node",
        &["--set", "teacher_stage.epochs=2"],
    );
    wait_for(&mut nodes, NODES_DEADLINE);
    for rank in 0..2 {
        let out = dir.path().join(format!("node{rank}"));
        let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
        let line: serde_json::Value = serde_json::from_str(log.lines().last().unwrap()).unwrap();
        // 12 images in batches of 4, two images of each on this node.
        assert_eq!(line["train"]["images"], 6, "{line}");
    }
    let logits = last_logits(dir.path(), "node");
    logits[0]
        .clone()
        .into_data()
        .assert_approx_eq::<f32>(&logits[1].clone().into_data(), Tolerance::absolute(1e-6));
}

/// Waits until `node` exits (at most `deadline`) and returns its status and what it printed.
fn exit_of(node: &mut Node, deadline: Duration) -> (std::process::ExitStatus, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = node.process.0.try_wait().unwrap() {
            return (status, node.printed());
        }
        assert!(
            started.elapsed() < deadline,
            "the node did not end within {deadline:?}:\n{}",
            node.printed()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The line of `text` that says the error.
fn error_line(text: &str) -> &str {
    text.lines().find(|l| l.starts_with("Error:")).unwrap_or("")
}

/// Waits until node 0 has logged `lines` epochs.
fn wait_for_epochs(dir: &Path, name: &str, lines: usize, nodes: &[Node]) {
    let log = dir.join(format!("{name}0")).join("metrics.jsonl");
    let started = Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |t| t.lines().count()) < lines {
        assert!(
            started.elapsed() < NODES_DEADLINE,
            "no epoch ended:\n{}",
            nodes[0].printed()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends `signal` to node 1 and waits for node 0: it must fail within `limit`, naming node 1,
/// without a panic. Returns what node 0 printed.
fn fault_ends_node_0(nodes: &mut [Node], signal: &str, limit: Duration, fault: &str) -> String {
    let peer = nodes[1].process.0.id().to_string();
    assert!(Command::new("kill")
        .args([signal, &peer])
        .status()
        .unwrap()
        .success());
    let signalled_at = Instant::now();
    let (status, printed) = exit_of(&mut nodes[0], limit + Duration::from_secs(30));
    assert!(!status.success(), "{printed}");
    assert!(
        signalled_at.elapsed() < limit,
        "node 0 took {:?}",
        signalled_at.elapsed()
    );
    eprintln!("node 0 after node 1 was {fault}: {}", error_line(&printed));
    assert!(printed.contains("node 1 (ws://127.0.0.1:"), "{printed}");
    assert!(!printed.contains("panicked"), "{printed}");
    printed
}

/// Six epochs, a checkpoint after every step: node 1 killed during the second, node 0 ends at
/// once, naming it and the step, without a panic; the group resumes (a new orchestrator: the
/// operator restarts the job) and ends where the uninterrupted group ends. Then node 1 stops
/// (SIGSTOP, a hung machine) and node 0 ends within the timeout, naming it.
#[cfg(unix)]
#[test]
fn a_dead_or_stalled_node_ends_its_peers_within_the_timeout_and_the_group_resumes() {
    const SETTINGS: &[&str] = &[
        "--set",
        "teacher_stage.epochs=6",
        "--set",
        "checkpoint_every_steps=1",
        "--node-timeout",
        "4",
    ];
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    tiny_folder(&data);
    let (_orchestrator, mut whole) = start_group(dir.path(), &data, "whole", SETTINGS);
    wait_for(&mut whole, NODES_DEADLINE);

    let (_orchestrator, mut nodes) = start_group(dir.path(), &data, "killed", SETTINGS);
    wait_for_epochs(dir.path(), "killed", 1, &nodes);
    let printed = fault_ends_node_0(&mut nodes, "-KILL", Duration::from_secs(4 + 10), "killed");
    assert!(printed.contains("stage teacher, epoch "), "{printed}");

    let (_orchestrator, mut resumed) = start_group(
        dir.path(),
        &data,
        "killed",
        &[SETTINGS, &["--resume"]].concat(),
    );
    wait_for(&mut resumed, NODES_DEADLINE);
    let (whole, resumed) = (
        last_logits(dir.path(), "whole"),
        last_logits(dir.path(), "killed"),
    );
    for rank in 0..2 {
        assert_eq!(
            whole[rank].clone().into_data(),
            resumed[rank].clone().into_data(),
            "node {rank}"
        );
    }

    let (_orchestrator, mut nodes) = start_group(dir.path(), &data, "stalled", SETTINGS);
    wait_for_epochs(dir.path(), "stalled", 1, &nodes);
    let printed = fault_ends_node_0(&mut nodes, "-STOP", Duration::from_secs(4 + 15), "stalled");
    let peer = nodes[1].process.0.id().to_string();
    let _ = Command::new("kill").args(["-CONT", &peer]).status();
    assert!(printed.contains("sent nothing within 4 s"), "{printed}");
}
