//! Compiles the wire contract with protox (a pure-Rust protobuf compiler), so
//! building Custos needs no system `protoc`.

#[cfg(feature = "grpc")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/custos/v1/custos.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}

/// Without the `grpc` feature there is no wire contract to generate.
#[cfg(not(feature = "grpc"))]
fn main() {}
