//! What the core does with the answer to each call and the result of each store operation it
//! started. Each part of the core names its own continuations, split by what they wait for
//! (`AfterCall` for a peer's answer, `AfterStore` for a store result); here they are wrapped
//! into one enum per kind and routed back to their part.
//!
//! So a call's answer reaches only code that waits for a call, and a store result only code that
//! waits for a store: the types say it, no branch has to. This module must not decide
//! anything: it only routes.

use dynamo_protocol::Response;

use super::{
    CallError, NodeCore, StoreError, StoreResult, Time, admin, anti_entropy, client, coordinate,
    handoff, hints, listing, reaper, serve,
};

/// An enum of the parts' continuations of one kind, with a `From` for each, so a part
/// passes its own `AfterCall` or `AfterStore` where the core takes this enum.
macro_rules! continuations {
    ($(#[$doc:meta])* $kind:ident { $($variant:ident($part:ty)),+ $(,)? } $($extra:tt)*) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(super) enum $kind {
            $($variant($part),)+
            $($extra)*
        }
        $(impl From<$part> for $kind {
            fn from(after: $part) -> Self {
                $kind::$variant(after)
            }
        })+
    };
}

continuations!(
    /// What the answer to a call is for, by the part of the core that made the call.
    CallFor {
        Coordinator(coordinate::AfterCall),
        Client(client::AfterCall),
        Admin(admin::AfterCall),
        Hints(hints::AfterCall),
        Handoff(handoff::AfterCall),
        AntiEntropy(anti_entropy::AfterCall),
        Listing(listing::AfterCall),
    }
);

continuations!(
    /// What the result of a store operation is for, by the part of the core that asked for it.
    StoreFor {
        Coordinator(coordinate::AfterStore),
        Serve(serve::AfterStore),
        Admin(admin::AfterStore),
        Hints(hints::AfterStore),
        Handoff(handoff::AfterStore),
        AntiEntropy(anti_entropy::AfterStore),
        Listing(listing::AfterStore),
        Reaper(reaper::AfterStore),
    }
    /// A save of the node state of this name.
    StateSaved(&'static str),
);

impl NodeCore {
    /// Routes the answer to a call (or why there is none) to the part that made it.
    pub(super) fn on_call_result(
        &mut self,
        now: Time,
        then: CallFor,
        result: Result<Response, CallError>,
    ) {
        match then {
            CallFor::Coordinator(after) => self.coordinator_call_answered(now, after, result),
            CallFor::Client(after) => self.client_call_answered(after, result),
            CallFor::Admin(after) => self.admin_call_answered(after, &result),
            CallFor::Hints(after) => self.hints_call_answered(now, after, result),
            CallFor::Handoff(after) => self.handoff_call_answered(now, after, &result),
            CallFor::AntiEntropy(after) => self.anti_entropy_call_answered(now, after, result),
            CallFor::Listing(after) => self.listing_call_answered(now, after, result),
        }
    }

    /// Routes the result of a store operation to the part that asked for it.
    pub(super) fn on_store_result(
        &mut self,
        now: Time,
        then: StoreFor,
        result: Result<StoreResult, StoreError>,
    ) {
        match then {
            StoreFor::Coordinator(after) => self.coordinator_store_done(now, after, result),
            StoreFor::Serve(after) => self.served(after, result),
            StoreFor::Admin(after) => self.admin_store_done(after, result),
            StoreFor::Hints(after) => self.hints_store_done(now, after, result),
            StoreFor::Handoff(after) => self.handoff_store_done(now, after, result),
            StoreFor::AntiEntropy(after) => self.anti_entropy_store_done(now, after, result),
            StoreFor::Listing(after) => self.listing_store_done(now, after, result),
            StoreFor::Reaper(after) => self.reaper_store_done(now, after, result),
            StoreFor::StateSaved(name) => self.state_saved(name, result),
        }
    }
}
