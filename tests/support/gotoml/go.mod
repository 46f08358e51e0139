// A reader of containerd's hosts.toml built against the go-toml module that a given
// containerd release uses (tests/integration/test_hosts_toml_parsers.py builds one
// binary per version with `go mod edit -require` in a copy of this directory).
module airgap.test/gotoml

go 1.21

require (
	github.com/pelletier/go-toml v1.9.5
	github.com/pelletier/go-toml/v2 v2.2.4
)
