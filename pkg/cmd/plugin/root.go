// Package plugin is `kubectl stargate`: repave servers one by one or as a
// Campaign, follow a Campaign (a progress bar per datacenter on a terminal,
// one line per change in a pipe), pause, resume, cancel and approve it, and
// show it as a tree. It follows kubectl's conventions through
// k8s.io/cli-runtime: -n, --kubeconfig, --context and the other client flags,
// and -o json|yaml|name printers.
package plugin

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	// Client-go's authentication plugins (OIDC), as kubectl links them;
	// exec plugins need no import.
	_ "k8s.io/client-go/plugin/pkg/client/auth"

	"stargate.io/stargate/pkg/generated/clientset/versioned"
)

// environment is what every subcommand shares: the streams, the client
// flags, and the seams unit tests replace (the client, the namespace, whether
// the output is a terminal, how the terminal view is built).
type environment struct {
	streams genericiooptions.IOStreams
	flags   *genericclioptions.ConfigFlags

	// newClient builds the clientset from the flags.
	newClient func() (versioned.Interface, error)
	// namespace is -n, or the kubeconfig context's namespace; explicit says
	// whether -n gave it.
	namespace func() (ns string, explicit bool, err error)
	// isTerminal says whether w is a terminal, to choose the live view.
	isTerminal func(w io.Writer) bool
	// newBars builds the live terminal view.
	newBars func(w io.Writer, campaign string) view
}

// NewCommand returns the root command of kubectl stargate.
func NewCommand(streams genericiooptions.IOStreams) *cobra.Command {
	flags := genericclioptions.NewConfigFlags(true)
	env := &environment{
		streams: streams,
		flags:   flags,
		newClient: func() (versioned.Interface, error) {
			cfg, err := flags.ToRESTConfig()
			if err != nil {
				return nil, err
			}
			return versioned.NewForConfig(cfg)
		},
		namespace: func() (string, bool, error) {
			return flags.ToRawKubeConfigLoader().Namespace()
		},
		isTerminal: isTerminal,
		newBars: func(w io.Writer, campaign string) view {
			return newBarView(w, campaign)
		},
	}
	return newRootCommand(env)
}

// newRootCommand builds the command tree on env; tests call it with fakes.
func newRootCommand(env *environment) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kubectl-stargate",
		Short: "Repave servers and follow Campaigns on Stargate",
		Long: `kubectl stargate works with Stargate's Hardware, Jobs and Campaigns (stargate.io).

A Campaign is named campaign/NAME, campaigns/NAME, camp/NAME or just NAME.
Exit status: 0 on success, 1 on any error (a failed Job or Campaign, a tripped
failure budget, a timeout).`,
		Annotations: map[string]string{
			cobra.CommandDisplayNameAnnotation: "kubectl stargate",
		},
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	cmd.AddCommand(
		newRepaveCommand(env),
		newStatusCommand(env),
		newGetCommand(env),
		newPauseCommand(env),
		newResumeCommand(env),
		newCancelCommand(env),
		newApproveCommand(env),
	)
	env.flags.AddFlags(cmd.PersistentFlags())
	return cmd
}

// isTerminal says whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// client builds the clientset once per command.
func (env *environment) client() (versioned.Interface, error) {
	c, err := env.newClient()
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	return c, nil
}
