//! Change notes pushed by the server: a connection of its own that `LISTEN`s on the
//! store's channel and forwards each notification's payload (the actor of a committed
//! change) to the subscribers. A lost connection is made again with backoff; after
//! each (re)connection an empty note ("someone may have changed something") goes out,
//! since notifications sent while nobody listened are lost.

use super::schema::CHANNEL;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio_postgres::AsyncMessage;

/// Listens for as long as the runtime lives, sending notes on `notes`.
pub(crate) fn start(
    handle: &tokio::runtime::Handle,
    config: tokio_postgres::Config,
    notes: broadcast::Sender<String>,
) {
    handle.spawn(async move {
        let mut pause = Duration::from_millis(100);
        loop {
            match listen_once(&config, &notes).await {
                Ok(()) => pause = Duration::from_millis(100),
                Err(e) => tracing::debug!("change notes: {e}"),
            }
            let _ = notes.send(String::new());
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    });
}

/// One connection's life: LISTEN, then forward until it ends.
async fn listen_once(
    config: &tokio_postgres::Config,
    notes: &broadcast::Sender<String>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut conn) = config.connect(tokio_postgres::NoTls).await?;
    let out = notes.clone();
    let pump = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    let _ = out.send(n.payload().to_string());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    // Listening from now on: whatever happened before is looked at once.
    let _ = notes.send(String::new());
    let ended = pump.await;
    drop(client);
    match ended {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}
