module ackbar.example/handlers

go 1.25

require github.com/ackbar-io/ackbar/sdk/go v0.1.0

// The SDK from this repository.
replace github.com/ackbar-io/ackbar/sdk/go => ../../sdk/go
