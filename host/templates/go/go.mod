module {{name}}

go 1.25

require github.com/ackbar-io/ackbar/sdk/go v0.1.0

{{sdk_dependency}}
