module github.com/ackbar-io/ackbar/sdk/go

go 1.25
