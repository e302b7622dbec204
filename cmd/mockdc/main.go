// Command mockdc serves a mock datacenter API; see package mockdc.
package main

import (
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/component-base/cli"

	"stargate.io/stargate/mockdc"
)

func main() {
	os.Exit(cli.Run(mockdc.NewCommand(genericapiserver.SetupSignalContext())))
}
