//! The cubecl settings the GPU benchmark script writes (`tools/cubecl-cache.toml`) parse as
//! cubecl's own configuration and put both caches where the script says. A wrong file would
//! make cubecl panic at the first kernel, on the GPU machine.
#![cfg(any(feature = "cuda", feature = "wgpu"))]

use std::path::PathBuf;

use burn::cubecl::config::cache::CacheConfig;
use burn::cubecl::config::CubeClRuntimeConfig;

#[test]
fn the_benchmark_cache_settings_parse() {
    let template = include_str!("../tools/cubecl-cache.toml");
    let text = template.replace("CACHE_DIR", "/tmp/sskd-cubecl/cache");
    let config: CubeClRuntimeConfig = toml::from_str(&text).expect("cubecl.toml parses");
    let autotune = config.autotune.cache.root();
    assert_eq!(autotune, PathBuf::from("/tmp/sskd-cubecl/cache/autotune"));
    match config.compilation.cache {
        Some(CacheConfig::File(path)) => {
            assert_eq!(path, PathBuf::from("/tmp/sskd-cubecl/cache/kernels"))
        }
        other => panic!("the compilation cache is not a folder: {other:?}"),
    }
}
