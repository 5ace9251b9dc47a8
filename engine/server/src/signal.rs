//! Stopping on SIGINT/SIGTERM, shared by the scheduled loops and the server.

use setpoint_runtime::Shutdown;

/// First SIGINT/SIGTERM: stop cleanly (cycles stop between targets and are recorded as
/// interrupted). A second one exits at once. Must be called inside a Tokio runtime.
pub fn spawn_signal_listener(shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            let signal = wait_for_signal().await;
            count += 1;
            if count == 1 {
                eprintln!("setpoint: {signal} received, stopping after the current target");
                shutdown.request();
            } else {
                eprintln!("setpoint: {signal} received again, exiting now");
                std::process::exit(130);
            }
        }
    });
}

async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, never report a signal.
        std::future::pending::<()>().await;
        return "no signal";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
