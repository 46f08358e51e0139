//go:build gotomlv1

package main

import (
	"errors"
	"sort"

	toml "github.com/pelletier/go-toml"
)

// decode reads the file as containerd 1.6 and 1.7 do: a go-toml v1 tree whose `host`
// must be a table, its keys ordered by the line they start on, then Unmarshal.
func decode(data []byte) (File, []string, error) {
	var file File
	tree, err := toml.LoadBytes(data)
	if err != nil {
		return file, nil, err
	}
	hostTree, ok := tree.Get("host").(*toml.Tree)
	if !ok {
		return file, nil, errors.New("`host` is not a table")
	}
	hosts := append([]string(nil), hostTree.Keys()...)
	sort.SliceStable(hosts, func(i, j int) bool {
		a, aok := hostTree.GetPath([]string{hosts[i]}).(*toml.Tree)
		b, bok := hostTree.GetPath([]string{hosts[j]}).(*toml.Tree)
		if !aok || !bok {
			return false
		}
		return a.Position().Line < b.Position().Line
	})
	if err := tree.Unmarshal(&file); err != nil {
		return file, nil, err
	}
	return file, hosts, nil
}
