//! Getting a command to the controller's leader from any node: proposed here when this node
//! leads, forwarded over the Raft listener (`tally_raft::forward`) to the node that does
//! otherwise, and tried again while the group elects a leader.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tally_raft::ForwardHandler;

use crate::command::ControllerCommand;
use crate::controller::{Controller, ControllerError};
use crate::outcome::{Outcome, Refusal};

/// The controller group's name on the Raft listener.
pub const CONTROLLER_GROUP: &str = "__cluster_metadata";
/// Pause between tries while no leader is known.
const RETRY_MS: u64 = 50;

type Answer = Result<Outcome, ControllerError>;

/// Proposes what other nodes forward to this one.
pub struct ProposalHandler(pub Arc<Controller>);

impl ForwardHandler for ProposalHandler {
    fn handle(&self, request: Bytes) -> Pin<Box<dyn Future<Output = Bytes> + Send>> {
        let controller = Arc::clone(&self.0);
        Box::pin(async move {
            let answer: Answer = match serde_json::from_slice::<ControllerCommand>(&request) {
                Ok(command) => controller.propose(&command).await,
                Err(e) => Err(ControllerError::Refused(format!(
                    "unreadable forwarded command: {e}"
                ))),
            };
            Bytes::from(serde_json::to_vec(&answer).expect("an answer serializes"))
        })
    }
}

/// Proposes `command` through whichever node leads the controller group, within `timeout`.
///
/// A try whose outcome is unknown (timed out, or the connection failed) is made again, so a
/// command may be applied twice: registering or allocating twice is harmless, and a topic
/// this call already created is recognised by its id.
pub async fn submit(
    controller: &Controller,
    command: &ControllerCommand,
    timeout: Duration,
) -> Answer {
    let deadline = tokio::time::Instant::now() + timeout;
    // While this node knows no leader (a broker that joined and has not been sent the
    // metadata log yet, or an election), it asks the voters in turn, and then the leader
    // one of them names.
    let voters = controller.other_voters();
    let mut tries = 0usize;
    let mut named = None;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let answer = match controller.leader_id().or(named.take()) {
            Some(leader) if leader == controller.node_id() => controller.propose(command).await,
            Some(leader) => forward_to(controller, leader, command, remaining).await,
            None if voters.is_empty() => Err(ControllerError::NotController { leader: None }),
            None => {
                tries += 1;
                let voter = voters[tries % voters.len()];
                forward_to(controller, voter, command, remaining).await
            }
        };
        if let Err(ControllerError::NotController {
            leader: Some(leader),
        }) = &answer
        {
            named = Some(*leader);
        }
        match answer {
            Ok(outcome) => return Ok(recognise_own_topic(controller, command, outcome)),
            Err(ControllerError::NotController { .. } | ControllerError::TimedOut(_))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn forward_to(
    controller: &Controller,
    leader: u64,
    command: &ControllerCommand,
    timeout: Duration,
) -> Answer {
    let Some(addr) = controller.peer_addr(leader) else {
        return Err(ControllerError::NotController { leader: None });
    };
    let request = Bytes::from(serde_json::to_vec(command).expect("a command serializes"));
    match tally_raft::forward(
        controller.transport(),
        &addr,
        CONTROLLER_GROUP,
        request,
        timeout,
    )
    .await
    {
        Ok(answer) => serde_json::from_slice::<Answer>(&answer).unwrap_or_else(|e| {
            Err(ControllerError::TimedOut(format!(
                "unreadable answer from node {leader}: {e}"
            )))
        }),
        Err(e) => Err(ControllerError::TimedOut(format!("node {leader}: {e}"))),
    }
}

/// A retried CreateTopic whose first try was applied finds its own topic: created.
fn recognise_own_topic(
    controller: &Controller,
    command: &ControllerCommand,
    outcome: Outcome,
) -> Outcome {
    let (
        ControllerCommand::CreateTopic { name, topic_id, .. },
        Outcome::Refused(Refusal::TopicAlreadyExists(_)),
    ) = (command, &outcome)
    else {
        return outcome;
    };
    controller.read(|state| match state.topic(name) {
        Some(t) if t.topic_id == *topic_id => Outcome::TopicCreated {
            topic_id: t.topic_id,
            partitions: t.partitions.clone(),
        },
        _ => outcome,
    })
}
