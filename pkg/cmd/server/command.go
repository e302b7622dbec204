package server

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/cli/globalflag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	"k8s.io/component-base/term"
)

// NewCommand returns the stargate-apiserver command.
func NewCommand(ctx context.Context, out, errOut io.Writer) *cobra.Command {
	o := NewOptions(out, errOut)
	logOptions := logs.NewOptions()
	cmd := &cobra.Command{
		Use:   "stargate-apiserver",
		Short: "Serve the stargate.io API (Hardware, Template, Job, Datacenter) from its own etcd",
		Long: `stargate-apiserver serves the stargate.io API from its own etcd (embedded unless
--etcd-servers is set) and drives Jobs through each datacenter's API.

By default it is an aggregated API server behind kube-apiserver, with delegated
authentication and authorization. With --standalone it needs no kube-apiserver:
it writes <data-dir>/kubeconfig for an admin client certificate instead.`,
		SilenceUsage: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unexpected arguments %q", args)
			}
			if err := logsapi.ValidateAndApply(logOptions, nil); err != nil {
				return err
			}
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.SetContext(ctx)

	fss := o.Flags()
	logsapi.AddFlags(logOptions, fss.FlagSet("logging"))
	globalflag.AddGlobalFlags(fss.FlagSet("global"), cmd.Name(), logs.SkipLoggingConfigurationFlags())
	for _, f := range fss.FlagSets {
		cmd.Flags().AddFlagSet(f)
	}
	cols, _, _ := term.TerminalSize(cmd.OutOrStdout())
	cliflag.SetUsageAndHelpFunc(cmd, fss, cols)
	return cmd
}
