//! `grpc.health.v1` on the peer port: SERVING exactly when the peer is ready (the rules of
//! `/readyz`: joined, stabilized, not leaving), NOT_SERVING otherwise, for the whole server
//! (service `""`) and for each chordnet service. Kubernetes' gRPC probe and `grpc_health_probe`
//! ask it.

use tokio::sync::watch;
use tonic::server::NamedService;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use super::pb::blob_server::BlobServer;
use super::pb::ring_server::RingServer;
use super::server::{BlobService, RingService};

/// The service names whose status follows readiness: the server as a whole and each service.
const NAMES: [&str; 3] = [
    "",
    <RingServer<RingService> as NamedService>::NAME,
    <BlobServer<BlobService> as NamedService>::NAME,
];

/// The health service, already showing the current readiness, and the task that keeps it
/// current until `ready`'s sender goes away (then NOT_SERVING).
pub(super) async fn service(
    mut ready: watch::Receiver<bool>,
) -> (HealthServer<impl Health>, tokio::task::JoinHandle<()>) {
    let (reporter, server) = tonic_health::server::health_reporter();
    let now = *ready.borrow_and_update();
    set(&reporter, now).await;
    let task = tokio::spawn(async move {
        while ready.changed().await.is_ok() {
            let now = *ready.borrow_and_update();
            set(&reporter, now).await;
        }
        set(&reporter, false).await;
    });
    (server, task)
}

async fn set(reporter: &HealthReporter, ready: bool) {
    let status = if ready {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in NAMES {
        reporter.set_service_status(name, status).await;
    }
}
