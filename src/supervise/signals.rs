//! Ctrl-C, SIGTERM and SIGHUP to borg. The first stops dispatching and walks every
//! child down the stop ladder; the second kills every tree at once.
//!
//! Children run in process groups of their own, so a Ctrl-C at the terminal reaches
//! borg only and borg decides what the children get. Once tokio has installed a
//! handler the default disposition never comes back, so borg exits by itself (130).

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// The two levels of shutdown.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    /// First signal: stop dispatching, ladder every child.
    pub stop: CancellationToken,
    /// Second signal: kill every tree now.
    pub kill: CancellationToken,
}

impl Shutdown {
    /// Installs the handlers; they live until the process ends.
    pub fn install() -> std::io::Result<Shutdown> {
        let sd = Shutdown::default();
        let mut int = signal(SignalKind::interrupt())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut hup = signal(SignalKind::hangup())?;
        let (stop, kill) = (sd.stop.clone(), sd.kill.clone());
        tokio::spawn(async move {
            let mut count = 0;
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                    _ = hup.recv() => {}
                }
                count += 1;
                if count == 1 {
                    eprintln!("borg: stopping: no new tasks; asking running children to stop (signal again to kill them at once)");
                    stop.cancel();
                } else {
                    eprintln!("borg: killing every running child now");
                    kill.cancel();
                }
            }
        });
        Ok(sd)
    }
}
