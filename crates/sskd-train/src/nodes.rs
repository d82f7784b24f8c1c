//! Data parallelism across machines with `sskd-collective` (Burn 0.21's `burn-collective` with
//! the fixes it needs; feature `collective`).
//!
//! One process per machine (a *node*) trains data-parallel over its own devices
//! ([`crate::parallel`]). With a node group joined ([`join`]), every step also sums the nodes'
//! gradients over the network before the optimiser step (each node's loss weighted by its
//! share of the global batch), so that every node applies the same step to the same model;
//! at the end of each epoch the nodes average their batch-norm running statistics. Each node
//! loads its own part of every global batch (`LoaderConfig::part`). A global orchestrator
//! ([`run_orchestrator`]) introduces the nodes to each other; tensors then travel between the
//! nodes directly (each node serves them on its data port).
//!
//! All nodes must run the same command (same seed, so the same initial weights, and the same
//! data) apart from their rank, address and output folder.

use std::sync::Mutex;
use std::time::Duration;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::{GradientsParams, MultiGradientsParams};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorPrimitive};
use sskd_collective::{
    self as collective, AllReduceStrategy, CollectiveConfig, CollectiveError,
    GlobalCollectiveError, PeerId, ReduceOperation,
};

use crate::{PeerFault, SetupError, TrainError};

/// Where this process sits among the nodes of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// Number of nodes (processes, usually one per machine).
    pub nodes: u32,
    /// This node's index, `0..nodes`.
    pub rank: u32,
    /// The orchestrator, `ws://host:port`.
    pub orchestrator: String,
    /// This node as the others reach it, `ws://host:port` (the port is `data_port`).
    pub address: String,
    /// The port of this node's tensor data service.
    pub data_port: u16,
    /// How long an operation across the nodes waits for another node before this node ends
    /// with an error naming it ([`DEFAULT_NODE_TIMEOUT`] by default).
    pub timeout: Duration,
}

/// The default [`NodeConfig::timeout`]: five minutes, longer than any step or the gap between
/// two nodes' evaluations on a healthy group, short enough that a hung group is noticed.
pub const DEFAULT_NODE_TIMEOUT: Duration = collective::DEFAULT_GLOBAL_TIMEOUT;

impl NodeConfig {
    /// Checks the rank and the addresses.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.nodes == 0 || self.rank >= self.nodes {
            return Err(SetupError::NodeRank {
                rank: self.rank,
                nodes: self.nodes,
            }
            .into());
        }
        for (flag, address) in [
            ("--orchestrator", &self.orchestrator),
            ("--node-address", &self.address),
        ] {
            if !address.starts_with("ws://") || address.len() <= "ws://".len() {
                return Err(SetupError::NodeAddress {
                    flag,
                    address: address.clone(),
                }
                .into());
            }
        }
        Ok(())
    }
}

static NODE: Mutex<Option<NodeConfig>> = Mutex::new(None);

/// The training error of a collective operation's `error` while `doing`: a node that went away
/// or stalled is named ([`PeerFault`]), anything else is Burn's error as it prints it.
fn collective_error(doing: &'static str) -> impl Fn(collective::CollectiveError) -> TrainError {
    move |error| {
        let peer = |node: collective::NodeId, address: &collective::Address, stalled| PeerFault {
            rank: node.index(),
            address: address.to_string(),
            stalled_seconds: stalled,
        };
        let peer = match &error {
            CollectiveError::Global(GlobalCollectiveError::PeerLost { node, address }) => {
                Some(peer(*node, address, None))
            }
            CollectiveError::Global(GlobalCollectiveError::PeerTimeout {
                node,
                address,
                seconds,
            }) => Some(peer(*node, address, Some(*seconds))),
            _ => None,
        };
        match peer {
            Some(peer) => TrainError::Peer {
                doing,
                peer,
                place: None,
            },
            None => TrainError::Nodes {
                doing,
                error: format!("{error:?}"),
            },
        }
    }
}

/// Joins the node group of `config` (blocks until every node has joined); `device` is the
/// node's main device (pass the inner backend's). Training steps then reduce across nodes
/// until [`leave`].
pub fn join<B: Backend>(config: NodeConfig, device: &B::Device) -> Result<(), TrainError> {
    config.validate()?;
    let parse = |address: &str| {
        address.parse().map_err(|reason: String| {
            TrainError::Setup(SetupError::AddressParse {
                address: address.to_string(),
                reason,
            })
        })
    };
    let collective_config = CollectiveConfig::default()
        .with_num_devices(1)
        .with_num_nodes(config.nodes)
        .with_global_address(parse(&config.orchestrator)?)
        .with_node_address(parse(&config.address)?)
        .with_data_service_port(config.data_port)
        .with_global_timeout(config.timeout)
        // Burn's ring all-reduce refuses tensors with fewer rows than nodes (biases, counts).
        .with_global_all_reduce_strategy(AllReduceStrategy::Tree(2));
    collective::register::<B>(PeerId(config.rank), device.clone(), collective_config)
        .map_err(collective_error("joining the node group"))?;
    *NODE.lock().expect("node lock") = Some(config);
    Ok(())
}

/// Leaves the node group (after the last step).
pub fn leave<B: Backend>() -> Result<(), TrainError> {
    let Some(config) = NODE.lock().expect("node lock").take() else {
        return Ok(());
    };
    collective::finish_collective::<B>(PeerId(config.rank))
        .map_err(collective_error("leaving the node group"))
}

/// `(rank, nodes)` of the joined node group, if any.
pub fn current() -> Option<(u32, u32)> {
    NODE.lock()
        .expect("node lock")
        .as_ref()
        .map(|c| (c.rank, c.nodes))
}

/// Serves as the run's orchestrator on `port` until the process is stopped.
pub fn run_orchestrator(port: u16) -> Result<(), TrainError> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| TrainError::Io {
        path: format!("orchestrator on port {port}").into(),
        reason: e.to_string(),
    })?;
    runtime.block_on(collective::start_global_orchestrator(port));
    Ok(())
}

/// The sum of `tensor` over the nodes (every node calls this in the same order).
pub fn sum_over_nodes<B: Backend, const D: usize>(
    tensor: Tensor<B, D>,
) -> Result<Tensor<B, D>, TrainError> {
    let Some((rank, _)) = current() else {
        return Ok(tensor);
    };
    let summed = collective::all_reduce::<B>(
        PeerId(rank),
        tensor.into_primitive().tensor(),
        ReduceOperation::Sum,
    )
    .map_err(collective_error("summing over the nodes"))?;
    Ok(Tensor::from_primitive(TensorPrimitive::Float(summed)))
}

/// The checkpoint positions (epochs done, steps done) every node holds, by rank, from this
/// node's `positions` (at most two: its newest checkpoint and the one before).
pub(crate) fn positions_of_every_node<B: Backend>(
    positions: &[(usize, usize)],
    device: &B::Device,
) -> Result<Vec<Vec<(usize, usize)>>, TrainError> {
    const SLOTS: usize = 2;
    let Some((rank, nodes)) = current() else {
        return Ok(vec![positions.to_vec()]);
    };
    // Each node fills its own slots (epochs + 1, steps; 0 = empty), then the sum over the
    // nodes holds everybody's: counts below 2^24, exact in f32.
    let mut values = vec![0.0f32; nodes as usize * SLOTS * 2];
    for (slot, (epochs, steps)) in positions.iter().take(SLOTS).enumerate() {
        let at = (rank as usize * SLOTS + slot) * 2;
        values[at] = *epochs as f32 + 1.0;
        values[at + 1] = *steps as f32;
    }
    let summed = sum_over_nodes(Tensor::<B, 1>::from_floats(values.as_slice(), device))?;
    let summed: Vec<f32> = summed
        .into_data()
        .convert::<f32>()
        .to_vec()
        .map_err(|source| TrainError::Values {
            what: "checkpoint positions of the nodes",
            source,
        })?;
    let position =
        |pair: &[f32]| (pair[0] >= 1.0).then(|| (pair[0] as usize - 1, pair[1] as usize));
    Ok(summed
        .chunks(SLOTS * 2)
        .map(|node| node.chunks(2).filter_map(position).collect())
        .collect())
}

/// Sums the local shards' gradients on `device`, then over the nodes, in the module's visiting
/// order (parameter ids differ between processes): one gradient set for the optimiser.
pub(crate) fn reduce_gradients<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    mut local: MultiGradientsParams,
    device: &B::Device,
) -> Result<GradientsParams, TrainError> {
    let mut visitor = ReduceVisitor::<B> {
        local: &mut local,
        reduced: GradientsParams::new(),
        device: device.clone(),
        error: None,
    };
    model.visit(&mut visitor);
    match visitor.error {
        Some(error) => Err(error),
        None => Ok(visitor.reduced),
    }
}

struct ReduceVisitor<'a, B: AutodiffBackend> {
    local: &'a mut MultiGradientsParams,
    reduced: GradientsParams,
    device: B::Device,
    error: Option<TrainError>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for ReduceVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        // Running statistics are visited too; they have no gradient and are not trainable.
        if self.error.is_some() || !value.is_require_grad() {
            return;
        }
        let local = self.local.remove::<B::InnerBackend, D>(param.id);
        let present = local.is_some();
        // A parameter without a gradient here may have one on another node: send zeros.
        let gradient = match local {
            Some((gradient, _)) => gradient.to_device(&self.device),
            None => Tensor::zeros(value.shape(), &self.device),
        };
        match sum_over_nodes(gradient) {
            Ok(summed) if present => self.reduced.register(param.id, summed),
            Ok(_) => {}
            Err(error) => self.error = Some(error),
        }
    }
}

/// `model` with every running statistic (every non-trainable float tensor) replaced by its
/// mean over the nodes.
pub(crate) fn average_running_states<B: AutodiffBackend, M: Module<B>>(
    model: M,
) -> Result<M, TrainError> {
    let Some((_, nodes)) = current() else {
        return Ok(model);
    };
    let mut mapper = AverageMapper { nodes, error: None };
    let model = model.map(&mut mapper);
    match mapper.error {
        Some(error) => Err(error),
        None => Ok(model),
    }
}

struct AverageMapper {
    nodes: u32,
    error: Option<TrainError>,
}

impl<B: AutodiffBackend> ModuleMapper<B> for AverageMapper {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, value, mapper) = param.consume();
        if value.is_require_grad() || self.error.is_some() {
            return Param::from_mapped_value(id, value, mapper);
        }
        let value = match sum_over_nodes(value.clone().inner()) {
            Ok(sum) => Tensor::from_inner(sum.div_scalar(self.nodes as f64)),
            Err(error) => {
                self.error = Some(error);
                value
            }
        };
        Param::from_mapped_value(id, value, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(rank: u32, orchestrator: &str) -> NodeConfig {
        NodeConfig {
            nodes: 2,
            rank,
            orchestrator: orchestrator.into(),
            address: "ws://localhost:3001".into(),
            data_port: 3001,
            timeout: DEFAULT_NODE_TIMEOUT,
        }
    }

    #[test]
    fn node_configs_are_checked() {
        assert!(config(1, "ws://localhost:3000").validate().is_ok());
        let rank = config(2, "ws://localhost:3000").validate().unwrap_err();
        assert!(rank.to_string().contains("not in 0..2"), "{rank}");
        let address = config(0, "localhost:3000").validate().unwrap_err();
        assert!(address.to_string().contains("ws://host:port"), "{address}");
        assert_eq!(current(), None);
    }
}
