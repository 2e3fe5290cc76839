//! Builds one image by hand and prints the result, for checking recipes without the CLI:
//!
//! ```text
//! cargo run -p ssp-image --example build -- debian-12 /var/cache/ssp/images [MIRROR]
//! ```
//!
//! Scratch space is a `work` folder beside the cache folder.

use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), ssp_image::Error> {
    let mut args = std::env::args().skip(1);
    let (Some(name), Some(cache_dir)) = (args.next(), args.next()) else {
        eprintln!("usage: build RECIPE CACHE_DIR [MIRROR]");
        std::process::exit(2);
    };
    let recipe = ssp_image::recipe(&name)?;
    let mut opts = ssp_image::BuildOptions::in_cache_dir(cache_dir);
    opts.mirror = args.next();
    let started = Instant::now();
    let built = ssp_image::build(&recipe, &opts, &mut |progress| match progress {
        ssp_image::Progress::Step(step) => {
            eprintln!("[{:6.1}s] {step}", started.elapsed().as_secs_f64())
        }
        ssp_image::Progress::Done => eprintln!("[{:6.1}s] done", started.elapsed().as_secs_f64()),
    })?;
    println!("{built:#?}");
    println!("{:.3} s, {} bytes", started.elapsed().as_secs_f64(), built.size);
    Ok(())
}
