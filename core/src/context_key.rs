//! The cluster's key for sealing context tokens (see `dynamo_quorum::ContextKey`): a
//! coordinator trusts a context's clock only if a node of the cluster sealed it, so a client
//! cannot make later writes vanish with a forged counter (issue 26).
//!
//! Every node must hold the same key. It travels in gossip (between nodes only: gossip needs a
//! node certificate) under [`CONTEXT_KEY`] and is saved with the node's state. A ring member
//! that holds none and hears none makes one from [`super::CoreConfig::secret`] (the founder at
//! once; a cluster upgraded from before sealing, on its first start). When members hold
//! different keys (two made one at once), every node adopts the smallest: tokens sealed under
//! another are refused with "read the key again" until then.
//!
//! This module must not know where the randomness comes from or how tokens travel.

use dynamo_quorum::{ClientContext, ContextError, ContextKey};

use super::{NodeCore, STATE_CONTEXT_KEY};

/// Gossip key holding a member's context key (32 bytes).
pub(super) const CONTEXT_KEY: &str = "context_key";
/// Gossip rounds a ring member without a key listens before it makes one.
const HEARD_NONE_ROUNDS: u64 = 3;

impl NodeCore {
    /// Adopts the smallest key any member gossips, if it is smaller than ours (or we have
    /// none); makes one if this ring member has none and hears none.
    pub(super) fn settle_context_key(&mut self) {
        let heard = self
            .gossip
            .members()
            .filter_map(|member| ContextKey::from_slice(member.get(CONTEXT_KEY)?))
            .min();
        let best = match (heard, &self.context_key) {
            (Some(heard), Some(ours)) if heard >= *ours => return,
            (Some(heard), _) => heard,
            (None, Some(_)) => return,
            (None, None) => {
                let member = self
                    .ring
                    .as_ref()
                    .is_some_and(|ring| ring.member(&self.me).is_some());
                // A joining node waits for the cluster's key; a member of a cluster upgraded
                // from before sealing makes one only after a few rounds heard none, so that not
                // every node of a rolling upgrade switches the cluster to a key of its own.
                if !member || (!self.founder_alone() && self.gossip.rounds() < HEARD_NONE_ROUNDS) {
                    return;
                }
                self.config.secret.clone()
            }
        };
        self.use_context_key(best, true);
    }

    /// Makes `key` the one in use: published, and saved with `save`.
    pub(super) fn use_context_key(&mut self, key: ContextKey, save: bool) {
        if save {
            self.save_state(STATE_CONTEXT_KEY, key.as_bytes().to_vec(), None);
        }
        if let Err(error) = self.gossip.set(CONTEXT_KEY, key.as_bytes().to_vec()) {
            self.problem(format!("could not publish the context key: {error}"));
        }
        self.context_key = Some(key);
    }

    /// Whether this node is the only member gossip knows (a founder, or a cluster of one).
    fn founder_alone(&self) -> bool {
        self.gossip.members().count() <= 1
    }

    /// The text token a client gets for `context`: sealed, once this node has the key.
    pub(super) fn seal(&self, context: &ClientContext) -> String {
        match &self.context_key {
            Some(key) => context.sealed(key),
            None => context.to_text(), // refused by coordinators: the client reads again
        }
    }

    /// The context of a client's write, if a node of this cluster sealed it unchanged.
    pub(super) fn open_context(&self, token: &str) -> Result<ClientContext, ContextError> {
        match &self.context_key {
            Some(key) => ClientContext::open(token, key),
            None => Err(ContextError::NotSealed),
        }
    }
}
