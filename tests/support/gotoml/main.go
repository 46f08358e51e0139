// Command gotoml reads one containerd hosts.toml the way containerd does and prints,
// as JSON, what containerd would take from it: the server, the host entries in the
// order containerd tries them, and every decoded host entry. It exits 1 with the
// parser's error on stderr when containerd would drop the file.
//
// decode_v1.go follows containerd 1.6/1.7 (go-toml v1: a tree, its keys sorted by
// position, then Unmarshal); decode_v2.go follows containerd 2.x (go-toml/v2:
// Unmarshal, with the order taken from the [host."..."] table headers).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"strings"
)

// HostEntry has the shape of containerd's hostFileConfig (its documented keys).
type HostEntry struct {
	Capabilities []string               `toml:"capabilities" json:"capabilities"`
	CA           interface{}            `toml:"ca" json:"ca,omitempty"`
	Client       interface{}            `toml:"client" json:"client,omitempty"`
	SkipVerify   *bool                  `toml:"skip_verify" json:"skip_verify,omitempty"`
	Header       map[string]interface{} `toml:"header" json:"header,omitempty"`
	OverridePath bool                   `toml:"override_path" json:"override_path"`
}

// File is the whole document: the top-level entry (for server), server and host.
type File struct {
	HostEntry
	Server string               `toml:"server"`
	Host   map[string]HostEntry `toml:"host"`
}

type report struct {
	Parser  string               `json:"parser"`
	Server  string               `json:"server"`
	Top     HostEntry            `json:"top"`
	Hosts   []string             `json:"hosts"`
	Decoded map[string]HostEntry `json:"decoded"`
}

func parserVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if strings.HasPrefix(dep.Path, "github.com/pelletier/go-toml") {
			return dep.Path + " " + dep.Version
		}
	}
	return "unknown"
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gotoml HOSTS.TOML")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	file, hosts, err := decode(data)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", parserVersion(), err)
		os.Exit(1)
	}
	if hosts == nil {
		hosts = []string{}
	}
	if file.Host == nil {
		file.Host = map[string]HostEntry{}
	}
	out := report{parserVersion(), file.Server, file.HostEntry, hosts, file.Host}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}
