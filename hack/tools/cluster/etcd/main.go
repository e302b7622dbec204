// Command etcd is the real etcd server (go.etcd.io/etcd/server/v3), built
// here because the etcd main package lives in a module that is not meant to
// be required.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
