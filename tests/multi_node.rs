//! Training across machines (feature `collective`), as processes on one machine: an
//! orchestrator and two nodes running the `imagenet` example's teacher stage on a tiny folder.
//! Both nodes must see half of every batch and end with the same weights.
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

#[test]
fn two_nodes_train_on_halves_of_each_batch_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("imagenet");
    tiny_folder(&data);
    let [port, data_port_0, data_port_1] = free_ports();
    let _orchestrator = KillOnDrop(
        Command::new(example_binary("imagenet"))
            .args(["orchestrator", "--port", &port.to_string()])
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
    let mut nodes: Vec<Node> = [data_port_0, data_port_1]
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
                .args([
                    "--set",
                    "test_batch_size=2",
                    "--set",
                    "teacher_stage.epochs=2",
                ])
                .arg("--data")
                .arg(&data)
                .arg("--out")
                .arg(dir.path().join(format!("node{rank}")))
                .args(["--nodes", "2", "--node-rank", &rank.to_string()])
                .args(["--orchestrator", &format!("ws://127.0.0.1:{port}")])
                .args(["--node-address", &format!("ws://127.0.0.1:{data_port}")])
                .args(["--data-port", &data_port.to_string()])
                .stdin(Stdio::null());
            Node::spawn(&mut command, dir.path().join(format!("node{rank}.log")))
        })
        .collect();
    wait_for(&mut nodes, NODES_DEADLINE);
    let device = Default::default();
    let probe = Tensor::<Flex, 4>::ones([2, 3, 32, 32], &device);
    let logits: Vec<Tensor<Flex, 2>> = (0..2)
        .map(|rank| {
            let out = dir.path().join(format!("node{rank}"));
            let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
            let line: serde_json::Value =
                serde_json::from_str(log.lines().last().unwrap()).unwrap();
            // 12 images in batches of 4, two images of each on this node.
            assert_eq!(line["train"]["images"], 6, "{line}");
            let model = create_model::<Flex>("resnet18", 2, &device).unwrap();
            let model = load_weights(model, &out.join("teacher-last.mpk"), &device).unwrap();
            model.forward(probe.clone()).logits
        })
        .collect();
    logits[0]
        .clone()
        .into_data()
        .assert_approx_eq::<f32>(&logits[1].clone().into_data(), Tolerance::absolute(1e-6));
}
