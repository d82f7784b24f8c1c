use std::{
    marker::PhantomData,
    sync::{Arc, Mutex},
    time::Duration,
    vec,
};

use burn_communication::{CommunicationChannel, Message, Protocol, ProtocolClient};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, RwLock};

use crate::{NodeId, global::shared::GlobalCollectiveError, node::base::NodeState};

/// Handles the status of sync requests from other nodes
pub(crate) struct SyncService<P: Protocol> {
    /// Current node's state, shared with the thread that does aggregations
    node_state: Arc<RwLock<Option<NodeState>>>,
    /// The number of peers that have requested to sync with us since the last successful sync.
    syncing_peers: Mutex<Vec<NodeId>>,
    /// Notification on each incoming sync request
    sync_notif: Notify,

    _p: PhantomData<P>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SyncRequest(NodeId);

impl<P: Protocol> SyncService<P> {
    pub fn new(node_state: Arc<RwLock<Option<NodeState>>>) -> Self {
        Self {
            node_state,
            syncing_peers: Mutex::new(vec![]),
            sync_notif: Notify::new(),
            _p: PhantomData,
        }
    }

    fn add_syncing_peer(&self, peer: NodeId) {
        if let Ok(mut syncing_peers) = self.syncing_peers.lock() {
            syncing_peers.push(peer);
        }
    }

    /// Sync with all peers: returns once every node has reached the barrier, or with an error
    /// naming a node that could not be reached or did not arrive within `timeout` (sskd: the
    /// release panicked or waited forever).
    pub async fn sync(&self, timeout: Duration) -> Result<(), GlobalCollectiveError> {
        // we can't sync while we register
        let node_state = self.node_state.read().await;
        let node_state = node_state
            .as_ref()
            .ok_or(GlobalCollectiveError::AllReduceBeforeRegister)?;

        // this peer is syncing
        self.add_syncing_peer(node_state.node_id);
        for (id, addr) in &node_state.nodes {
            if *id == node_state.node_id {
                continue;
            }
            let lost = || GlobalCollectiveError::PeerLost {
                node: *id,
                address: addr.clone(),
            };
            let connect = P::Client::connect(addr.clone(), "sync");
            let mut connection = tokio::time::timeout(timeout, connect)
                .await
                .ok()
                .flatten()
                .ok_or_else(lost)?;
            let msg = SyncRequest(node_state.node_id);
            let sync_bytes =
                rmp_serde::to_vec(&msg).map_err(|_| GlobalCollectiveError::InvalidMessage)?;
            connection
                .send(Message::new(sync_bytes.into()))
                .await
                .map_err(|_| lost())?;
        }
        let all_arrived = async {
            loop {
                // Register for the next notification before looking (sskd patch): `notify_waiters`
                // wakes only futures that already wait, so a request arriving between the look and
                // the wait would otherwise be missed and this barrier would wait forever.
                let next_request = self.sync_notif.notified();
                tokio::pin!(next_request);
                next_request.as_mut().enable();
                if self.all_synced(node_state) {
                    return;
                }
                // Wait for the next sync to come in
                next_request.await
            }
        };
        if tokio::time::timeout(timeout, all_arrived).await.is_ok() {
            return Ok(());
        }
        let arrived = self
            .syncing_peers
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let (node, address) = node_state
            .nodes
            .iter()
            .filter(|(id, _)| !arrived.contains(id))
            .min_by_key(|(id, _)| **id)
            .map(|(id, address)| (*id, address.clone()))
            .ok_or(GlobalCollectiveError::WrongOrchestratorResponse)?;
        Err(GlobalCollectiveError::PeerTimeout {
            node,
            address,
            seconds: timeout.as_secs(),
        })
    }

    /// Whether every node has reached the barrier; if so, the list is reset for the next one
    /// (sskd patch: 0.21.0 cleared a copy, so a second barrier never completed).
    fn all_synced(&self, node_state: &NodeState) -> bool {
        let Ok(mut shared_peers) = self.syncing_peers.lock() else {
            return false;
        };
        let mut syncing_peers = shared_peers.to_vec();
        syncing_peers.sort();
        let mut all_node_ids = node_state.nodes.keys().cloned().collect::<Vec<_>>();
        all_node_ids.sort();
        let all = syncing_peers == all_node_ids;
        if all {
            shared_peers.clear();
        }
        all
    }

    pub async fn handle_sync_connection<C: CommunicationChannel>(&self, mut channel: C) {
        // sskd: a peer that goes away or sends garbage is ignored here (the barrier's timeout
        // names it), not a panic of the server task.
        let Ok(Some(msg)) = channel.recv().await else {
            return;
        };
        let Ok(msg) = rmp_serde::from_slice::<SyncRequest>(&msg.data) else {
            log::warn!("ignoring a sync request that is not one");
            return;
        };

        self.add_syncing_peer(msg.0);

        self.sync_notif.notify_waiters();
    }
}
