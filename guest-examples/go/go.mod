module ackbar.example/handlers

go 1.27.1

require go.bytecodealliance.org/pkg v0.4.0

// The runtime support the generated bindings use. build.sh copies it out of the
// wit-bindgen-go crate that generates the bindings, so the two always match.
replace go.bytecodealliance.org/pkg => ./target/go-pkg
