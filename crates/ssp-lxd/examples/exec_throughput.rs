//! How fast LXD exec takes bytes on stdin, by websocket frame size (a measuring aid, not a
//! test): `exec_throughput SOCKET INSTANCE MEGABYTES FRAME_KIB...`.

use std::time::Instant;

use bytes::Bytes;
use ssp_lxd::{Client, ExecOptions};

#[tokio::main]
async fn main() -> ssp_lxd::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let client = Client::new(&args[1])?;
    let megabytes: usize = args[3].parse().expect("megabytes");
    for frame in &args[4..] {
        let frame_kib: usize = frame.parse().expect("frame size in KiB");
        let chunk = Bytes::from(vec![7u8; frame_kib * 1024]);
        let command = ["sh".to_string(), "-c".into(), "cat > /dev/null".into()];
        let started = Instant::now();
        let mut exec = client.exec(&args[2], &command, ExecOptions::default()).await?;
        let mut stdin = exec.take_stdin();
        let frames = megabytes * 1024 / frame_kib;
        let writing = Instant::now();
        for _ in 0..frames {
            stdin.write(chunk.clone()).await?;
        }
        stdin.close().await?;
        let code = exec.wait().await?.code;
        let elapsed = writing.elapsed().as_secs_f64();
        println!(
            "frame {frame_kib:5} KiB: {:7.1} MB/s (exec set-up {:.0} ms, exit {code})",
            megabytes as f64 / elapsed,
            (writing - started).as_secs_f64() * 1000.0
        );
    }
    Ok(())
}
