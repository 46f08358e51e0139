//go:build !gotomlv1

package main

import (
	toml "github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// decode reads the file as containerd 2.x does: Unmarshal for the values, and the
// hosts tried are those named by top-level table headers [host."URL"] (or a sub-table
// of one), in file order. A host given any other way is decoded but never tried.
func decode(data []byte) (File, []string, error) {
	var file File
	if err := toml.Unmarshal(data, &file); err != nil {
		return file, nil, err
	}
	var hosts []string
	seen := map[string]bool{}
	p := unstable.Parser{}
	p.Reset(data)
	for p.NextExpression() {
		expr := p.Expression()
		if expr.Kind != unstable.Table {
			continue
		}
		var parts []string
		for it := expr.Key(); it.Next(); {
			parts = append(parts, string(it.Node().Data))
		}
		if len(parts) >= 2 && parts[0] == "host" && !seen[parts[1]] {
			seen[parts[1]] = true
			hosts = append(hosts, parts[1])
		}
	}
	if err := p.Error(); err != nil {
		return file, nil, err
	}
	return file, hosts, nil
}
