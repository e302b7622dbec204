package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/generated/clientset/versioned"
)

const statusLong = `Show a Campaign's progress and, with --watch (the default), wait for it to end,
in the words of kubectl rollout status:

  Waiting for campaign "os-2" to finish: 412 of 5000 servers done (wave 3/7, 2 failed)...
  campaign "os-2" successfully completed

Done counts the servers that succeeded, failed, were cancelled or skipped.
On a terminal, a progress bar per datacenter is drawn under that line (done
of targets, failures, and why the datacenter is paused); in a pipe, the line
is printed again each time it changes.

Exit status: 0 when the Campaign is Complete; 1 when it Failed, was
Cancelled, a failure budget is exceeded (the Campaign's, or one datacenter's:
either needs an operator to raise spec.failurePolicy.maxFailures before the
Campaign can complete), or --timeout passed. With --watch=false the state is
printed once, with the same exit status (0 while it runs).`

type statusOptions struct {
	watch   bool
	timeout time.Duration
}

func newStatusCommand(env *environment) *cobra.Command {
	o := &statusOptions{watch: true}
	cmd := &cobra.Command{
		Use:   "status campaign/NAME",
		Short: "Show a Campaign's progress and wait for it to finish",
		Long:  statusLong,
		Example: `  kubectl stargate status campaign/os-2
  kubectl stargate status os-2 --timeout=2h
  kubectl stargate status camp/os-2 --watch=false`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := campaignName(args[0])
			if err != nil {
				return err
			}
			if o.timeout < 0 {
				return fmt.Errorf("--timeout must not be negative")
			}
			client, err := env.client()
			if err != nil {
				return err
			}
			return followCampaign(cmd.Context(), env, client, name, *o, env.streams.Out)
		},
	}
	cmd.Flags().BoolVarP(&o.watch, "watch", "w", o.watch, "Watch the Campaign until it ends; false prints its state once.")
	cmd.Flags().DurationVar(&o.timeout, "timeout", 0, "How long to wait before giving up (exit 1); 0 waits for ever.")
	return cmd
}

// followCampaign prints the Campaign's progress to out and, with o.watch,
// follows it until it ends, a budget trips or o.timeout passes.
func followCampaign(ctx context.Context, env *environment, client versioned.Interface, name string, o statusOptions, out io.Writer) error {
	c, err := client.StargateV1alpha1().Campaigns().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if ended, err := finished(c); ended {
		if err == nil {
			fmt.Fprintln(out, completedLine(c))
		}
		return err
	}
	if !o.watch {
		fmt.Fprintln(out, progressLine(c, true))
		return nil
	}

	var v view = &lineView{out: out}
	if env.isTerminal(out) {
		v = env.newBars(out, name)
	}
	v.update(c)
	last, err := watchCampaign(ctx, client, name, o.timeout, func(c *v1alpha1.Campaign) (bool, error) {
		ended, err := finished(c)
		if !ended {
			v.update(c)
		}
		return ended, err
	})
	if last == nil {
		last = c
	}
	v.finish(last)
	switch {
	case err == nil:
		fmt.Fprintln(out, completedLine(last))
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted while waiting for campaign %q: %s", name, countsText(last.Status.Counts))
	case errors.Is(err, errTimeout):
		return fmt.Errorf("timed out after %s waiting for campaign %q to finish: %d of %d servers done (%d failed)",
			o.timeout, name, done(last.Status.Counts), last.Status.Counts.Targets, last.Status.Counts.Failed)
	default:
		return err
	}
}

var errTimeout = errors.New("timed out")

// watchCampaign calls cond with each new state of the Campaign until cond
// says it is done or fails, the Campaign is deleted, or timeout (0: none)
// passes (errTimeout). It returns the last state seen, if any. It lists and
// watches through an informer, so dropped watches are resumed.
func watchCampaign(ctx context.Context, client versioned.Interface, name string, timeout time.Duration,
	cond func(*v1alpha1.Campaign) (bool, error)) (*v1alpha1.Campaign, error) {
	campaigns := client.StargateV1alpha1().Campaigns()
	lw := byName(name, campaigns.List, campaigns.Watch)
	var last *v1alpha1.Campaign
	err := untilWithSync(ctx, timeout, cache.ToListWatcherWithWatchListSemantics(lw, client), &v1alpha1.Campaign{},
		func(e watch.Event) (bool, error) {
			c, ok := e.Object.(*v1alpha1.Campaign)
			if !ok || c.Name != name {
				return false, nil
			}
			if e.Type == watch.Deleted {
				return false, fmt.Errorf("campaign %q was deleted", name)
			}
			last = c
			return cond(c)
		})
	return last, err
}

// untilWithSync is watchtools.UntilWithSync under an optional timeout, which
// it reports as errTimeout.
func untilWithSync(ctx context.Context, timeout time.Duration, lw cache.ListerWatcher, obj runtime.Object, cond watchtools.ConditionFunc) error {
	wctx, cancel := watchtools.ContextWithOptionalTimeout(ctx, timeout)
	defer cancel()
	_, err := watchtools.UntilWithSync(wctx, lw, obj, nil, cond)
	if err != nil && ctx.Err() == nil && errors.Is(wctx.Err(), context.DeadlineExceeded) {
		return errTimeout
	}
	return err
}
