//! The server's shutdown signal: a `watch` flag the composition root turns
//! true, which every long-running task (services, keeper, webhooks,
//! checkpoints, certificate reloads) selects on.

use tokio::sync::watch;

/// Resolves once the shutdown flag turns true (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}
