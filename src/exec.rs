//! Running CPU work (parsing, encoding) on rayon without blocking the tokio runtime.

/// Runs `work` on the rayon pool and awaits its result.
pub async fn cpu<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let _ = sender.send(work());
    });
    receiver
        .await
        .expect("rayon task completes (a panic aborts the process)")
}
