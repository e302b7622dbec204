package plugin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/generated/clientset/versioned"
)

// control is what pause, resume, cancel and approve share: read the
// Campaign, decide the merge patch of its spec (nil: nothing to change),
// send it, say what was done.
type control struct {
	use, short, long, example string
	// decide returns the spec fields to merge (nil for none) and what to
	// print: "paused", "already paused".
	decide func(c *v1alpha1.Campaign) (spec map[string]any, said string, err error)
	// after runs once the patch is sent (resume's warnings).
	after func(c *v1alpha1.Campaign, out io.Writer) error
}

func (ctl control) command(env *environment, flags func(*cobra.Command)) *cobra.Command {
	cmd := &cobra.Command{
		Use:     ctl.use + " campaign/NAME",
		Short:   ctl.short,
		Long:    ctl.long,
		Example: ctl.example,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := campaignName(args[0])
			if err != nil {
				return err
			}
			client, err := env.client()
			if err != nil {
				return err
			}
			return ctl.run(cmd.Context(), client, name, env.streams.Out)
		},
	}
	if flags != nil {
		flags(cmd)
	}
	return cmd
}

func (ctl control) run(ctx context.Context, client versioned.Interface, name string, out io.Writer) error {
	campaigns := client.StargateV1alpha1().Campaigns()
	c, err := campaigns.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	spec, said, err := ctl.decide(c)
	if err != nil {
		return err
	}
	if spec != nil {
		patch, err := json.Marshal(map[string]any{"spec": spec})
		if err != nil {
			return err
		}
		if _, err := campaigns.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "campaign.stargate.io/%s %s\n", name, said)
	if ctl.after != nil {
		return ctl.after(c, out)
	}
	return nil
}

// ended says whether the Campaign has ended, and how.
func ended(c *v1alpha1.Campaign) (v1alpha1.CampaignPhase, bool) {
	switch p := c.Status.Phase; p {
	case v1alpha1.CampaignComplete, v1alpha1.CampaignFailed, v1alpha1.CampaignCancelled:
		return p, true
	}
	return "", false
}

func newPauseCommand(env *environment) *cobra.Command {
	return control{
		use:   "pause",
		short: "Pause a Campaign: start no new Job (running ones finish)",
		long: `Set spec.paused: the Campaign starts no new Job until resumed; Jobs already
running finish. Pausing a paused Campaign changes nothing.`,
		example: `  kubectl stargate pause campaign/os-2`,
		decide: func(c *v1alpha1.Campaign) (map[string]any, string, error) {
			if p, ok := ended(c); ok {
				return nil, "", fmt.Errorf("campaign %q has ended (%s): there is nothing to pause", c.Name, p)
			}
			if c.Spec.Paused {
				return nil, "already paused", nil
			}
			return map[string]any{"paused": true}, "paused", nil
		},
	}.command(env, nil)
}

func newResumeCommand(env *environment) *cobra.Command {
	return control{
		use:   "resume",
		short: "Resume a paused Campaign",
		long: `Clear spec.paused so the Campaign starts Jobs again.

Resuming does not clear a tripped failure budget: a Campaign (or a datacenter)
paused because its failures exceeded spec.failurePolicy.maxFailures stays
paused until the budget is raised above the failures so far. resume then says
which budgets tripped (global, a datacenter's, a wave's), prints one kubectl
patch command that raises each of them, and exits 1.`,
		example: `  kubectl stargate resume campaign/os-2`,
		decide: func(c *v1alpha1.Campaign) (map[string]any, string, error) {
			if p, ok := ended(c); ok {
				return nil, "", fmt.Errorf("campaign %q has ended (%s): there is nothing to resume", c.Name, p)
			}
			if !c.Spec.Paused {
				return nil, "was not paused", nil
			}
			return map[string]any{"paused": false}, "resumed", nil
		},
		after: func(c *v1alpha1.Campaign, out io.Writer) error {
			if err := budgetStillTripped(c); err != nil {
				return err
			}
			if pausedFor(c, v1alpha1.CampaignReasonAwaitingApproval) {
				fmt.Fprintf(out, "campaign %q also awaits approval of its next wave: kubectl stargate approve campaign/%s\n", c.Name, c.Name)
			}
			return nil
		},
	}.command(env, nil)
}

// budgetStillTripped explains, for a Campaign the controller holds back by
// a tripped failure budget, that resuming does not clear it: which budgets
// the failures exceed (exceededBudgets) and one patch that raises each of
// them just enough (raisedBudgets).
func budgetStillTripped(c *v1alpha1.Campaign) error {
	if !heldByBudget(c) {
		return nil
	}
	trips := exceededBudgets(c)
	if len(trips) == 0 {
		if stale(c) {
			// The budget was likely raised already: the status is older
			// than the spec.
			return nil
		}
		return fmt.Errorf(`campaign %q stays paused: failure budget exceeded, but none of spec.failurePolicy.maxFailures is exceeded by the failures in status.
Resuming does not clear a tripped budget: raise the one the Paused condition names (kubectl stargate status campaign/%s)`, c.Name, c.Name)
	}
	patch, err := budgetPatch(c.Name, raisedBudgets(c, trips))
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("campaign %q stays paused: failure budget exceeded: %s.\n", c.Name, tripsText(trips))
	msg += "Resuming does not clear a tripped budget: raise spec.failurePolicy.maxFailures to at least the failures so far"
	if trips[len(trips)-1].key == budgetPerWave {
		msg += " (perWave's value below is an upper bound: the Campaign's failures in all)"
	}
	return errors.New(msg + ", e.g.\n  " + patch)
}

func newCancelCommand(env *environment) *cobra.Command {
	return control{
		use:   "cancel",
		short: "Cancel a Campaign: start no new Job, cancel the running ones",
		long: `Set spec.cancel: the Campaign starts no new Job, cancels those running, and
ends Cancelled. It cannot be undone.`,
		example: `  kubectl stargate cancel campaign/os-2`,
		decide: func(c *v1alpha1.Campaign) (map[string]any, string, error) {
			if p, ok := ended(c); ok {
				return nil, fmt.Sprintf("has already ended (%s)", p), nil
			}
			if c.Spec.Cancel {
				return nil, "already cancelled", nil
			}
			return map[string]any{"cancel": true}, "cancelled", nil
		},
	}.command(env, nil)
}

func newApproveCommand(env *environment) *cobra.Command {
	var wave int32
	return control{
		use:   "approve",
		short: "Approve the Campaign's waves up to the current one (or --wave N)",
		long: `Raise spec.approvedWaves so that a wave with requireApproval may start.

Without --wave, approves up to the current wave (status.currentWave: the wave
held for approval, when one is). With --wave N, approves every wave up to N.
approvedWaves never decreases. Approving twice approves nothing more: the next
wave that asks for approval waits for its own.`,
		example: `  kubectl stargate approve campaign/os-2
  kubectl stargate approve campaign/os-2 --wave 3`,
		decide: func(c *v1alpha1.Campaign) (map[string]any, string, error) {
			target, err := waveToApprove(c, wave)
			if err != nil {
				return nil, "", err
			}
			switch {
			case target <= c.Spec.ApprovedWaves && wave == 0 && awaitingApproval(c) && stale(c):
				// The held wave is approved; the controller has not read it yet.
				return nil, fmt.Sprintf("approved through wave %d; waiting for the controller to start it", c.Spec.ApprovedWaves), nil
			case target <= c.Spec.ApprovedWaves && c.Spec.ApprovedWaves == 0:
				return nil, "has no wave awaiting approval (--wave N approves ahead)", nil
			case target <= c.Spec.ApprovedWaves:
				return nil, fmt.Sprintf("already approved through wave %d", c.Spec.ApprovedWaves), nil
			}
			return map[string]any{"approvedWaves": target}, fmt.Sprintf("approved through wave %d", target), nil
		},
	}.command(env, func(cmd *cobra.Command) {
		cmd.Flags().Int32Var(&wave, "wave", 0, "Approve every wave up to this number (from 1).")
	})
}

// waveToApprove is the approvedWaves to set: --wave when given, else
// max(spec.approvedWaves, status.currentWave). The controller makes the wave
// it holds for approval the current one, so that is the one approved; a
// status written before an approval the controller has not read yet still
// shows it held, and must not approve the wave after it. A wave held while
// status names no current wave yet is the first.
func waveToApprove(c *v1alpha1.Campaign, wave int32) (int32, error) {
	if p, ok := ended(c); ok {
		return 0, fmt.Errorf("campaign %q has ended (%s): there is nothing to approve", c.Name, p)
	}
	if wave < 0 {
		return 0, errors.New("--wave must be a wave number, from 1")
	}
	if wave > 0 {
		if n := waves(c); n > 0 && wave > n {
			return 0, fmt.Errorf("campaign %q has %d waves: there is no wave %d", c.Name, n, wave)
		}
		return wave, nil
	}
	target := max(c.Spec.ApprovedWaves, c.Status.CurrentWave)
	if target == 0 && awaitingApproval(c) {
		target = 1
	}
	return target, nil
}

// awaitingApproval says whether a wave is held for approval.
func awaitingApproval(c *v1alpha1.Campaign) bool {
	return heldFor(c, v1alpha1.CampaignReasonAwaitingApproval)
}
