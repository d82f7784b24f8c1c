//! Training across machines (feature `collective`), as processes on one machine: an
//! orchestrator and two nodes running the `imagenet` example's teacher stage on a tiny folder.
//! Both nodes must see half of every batch and end with the same weights.
#![cfg(feature = "collective")]

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use burn::backend::Flex;
use burn::tensor::{Tensor, Tolerance};
use common::{example_binary, succeeded};
use sskd::models::create_model;
use sskd::models::import::load_weights;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Stops the orchestrator however the test ends.
struct Orchestrator(Child);

impl Drop for Orchestrator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
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
    let port = free_port();
    let _orchestrator = Orchestrator(
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
    let nodes: Vec<_> = (0..2)
        .map(|rank| {
            let data_port = free_port();
            Command::new(example_binary("imagenet"))
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
                .spawn_output()
        })
        .collect();
    for node in nodes {
        succeeded(&node.join().unwrap());
    }
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

/// Runs a command on a thread and hands back its output.
trait SpawnOutput {
    fn spawn_output(&mut self) -> std::thread::JoinHandle<std::process::Output>;
}

impl SpawnOutput for Command {
    fn spawn_output(&mut self) -> std::thread::JoinHandle<std::process::Output> {
        let child = self
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::spawn(move || child.wait_with_output().unwrap())
    }
}
