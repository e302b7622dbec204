package plugin

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// done counts the members that will not be operated on any more: succeeded,
// failed, cancelled or skipped.
func done(c v1alpha1.CampaignCounts) int32 {
	return c.Succeeded + c.Failed + c.Cancelled + c.Skipped
}

// countsText is "412/5000 done, 2 failed".
func countsText(c v1alpha1.CampaignCounts) string {
	return fmt.Sprintf("%d/%d done, %d failed", done(c), c.Targets, c.Failed)
}

// waveText is "wave 3/7", "wave 3" when the plan is unknown, "" before the first.
func waveText(c *v1alpha1.Campaign) string {
	switch {
	case c.Status.CurrentWave == 0:
		return ""
	case len(c.Status.Plan) == 0:
		return fmt.Sprintf("wave %d", c.Status.CurrentWave)
	default:
		return fmt.Sprintf("wave %d/%d", c.Status.CurrentWave, waves(c))
	}
}

// pausedText says why a datacenter starts no Job: "paused: OutsideWindow,
// next window 2026-11-29T02:00:00Z", or "" when it is not paused.
func pausedText(dc v1alpha1.CampaignDatacenterStatus) string {
	if dc.PausedReason == "" {
		return ""
	}
	s := "paused: " + dc.PausedReason
	if dc.NextWindow != nil {
		s += ", next window " + dc.NextWindow.UTC().Format(time.RFC3339)
	}
	return s
}

// pausedCondition is the Campaign's Paused condition when it is True.
func pausedCondition(c *v1alpha1.Campaign) *metav1.Condition {
	cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.CampaignConditionPaused)
	if cond == nil || cond.Status != metav1.ConditionTrue {
		return nil
	}
	return cond
}

// pausedFor says whether the Campaign's Paused condition gives reason.
func pausedFor(c *v1alpha1.Campaign, reason string) bool {
	cond := pausedCondition(c)
	return cond != nil && cond.Reason == reason
}

// heldFor says whether the controller holds the Campaign back for reason:
// in its Paused condition, or as a datacenter's pausedReason.
func heldFor(c *v1alpha1.Campaign, reason string) bool {
	if pausedFor(c, reason) {
		return true
	}
	for _, dc := range c.Status.Datacenters {
		if dc.PausedReason == reason {
			return true
		}
	}
	return false
}

// phase is the Campaign's phase, Pending before the controller wrote one.
func phase(c *v1alpha1.Campaign) v1alpha1.CampaignPhase {
	if c.Status.Phase == "" {
		return v1alpha1.CampaignPending
	}
	return c.Status.Phase
}

// started says whether the Campaign fixed its members.
func started(c *v1alpha1.Campaign) bool {
	return c.Status.StartTime != nil || c.Status.Counts.Targets > 0 || c.Status.CurrentWave > 0
}

// progressLine is the Campaign's progress in kubectl rollout status's words:
//
//	Waiting for campaign "x" to finish: 412 of 5000 servers done (wave 3/7, 2 failed)...
//
// with what holds it back: the Paused condition, or (with perDatacenter) the
// datacenters paused, grouped by reason.
func progressLine(c *v1alpha1.Campaign, perDatacenter bool) string {
	if stale(c) {
		return fmt.Sprintf("Waiting for campaign %q spec update to be observed...", c.Name)
	}
	if !started(c) {
		line := fmt.Sprintf("Waiting for campaign %q to start", c.Name)
		if v := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.CampaignConditionValidated); v != nil && v.Status == metav1.ConditionFalse {
			line += ": " + conditionText(v)
		}
		return line + "..."
	}
	return fmt.Sprintf("Waiting for campaign %q to finish: %s...", c.Name, progressText(c, perDatacenter))
}

// stateLine is the Campaign's state once waiting is over:
//
//	campaign "x" Complete: 5000 of 5000 servers done (wave 7/7, 2 failed)
func stateLine(c *v1alpha1.Campaign) string {
	return fmt.Sprintf("campaign %q %s: %s", c.Name, phase(c), progressText(c, false))
}

// progressText is "412 of 5000 servers done (wave 3/7, 2 failed)" and what
// holds the Campaign back, if anything.
func progressText(c *v1alpha1.Campaign, perDatacenter bool) string {
	counts := c.Status.Counts
	var detail []string
	if w := waveText(c); w != "" {
		detail = append(detail, w)
	}
	detail = append(detail, fmt.Sprintf("%d failed", counts.Failed))
	text := fmt.Sprintf("%d of %d servers done (%s)", done(counts), counts.Targets, strings.Join(detail, ", "))
	if held := heldText(c, perDatacenter); held != "" {
		text += "; " + held
	}
	return text
}

// heldText says what holds the Campaign back: "paused: AwaitingApproval:
// <message>" from its Paused condition, else (with perDatacenter) the paused
// datacenters grouped by reason ("paused: Baking in dc-a, dc-b;
// FailureBudgetExceeded in dc-c").
func heldText(c *v1alpha1.Campaign, perDatacenter bool) string {
	if cond := pausedCondition(c); cond != nil {
		return "paused: " + conditionText(cond)
	}
	if !perDatacenter {
		return ""
	}
	byReason := map[string][]string{}
	for _, dc := range c.Status.Datacenters {
		if dc.PausedReason != "" {
			byReason[dc.PausedReason] = append(byReason[dc.PausedReason], dc.Name)
		}
	}
	if len(byReason) == 0 {
		return ""
	}
	reasons := make([]string, 0, len(byReason))
	for r := range byReason {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	parts := make([]string, 0, len(reasons))
	for _, r := range reasons {
		dcs := byReason[r]
		sort.Strings(dcs)
		parts = append(parts, r+" in "+strings.Join(dcs, ", "))
	}
	return "paused: " + strings.Join(parts, "; ")
}

// conditionText is "Reason: message", or the part that is set.
func conditionText(cond *metav1.Condition) string {
	switch {
	case cond.Message == "":
		return cond.Reason
	case cond.Reason == "":
		return cond.Message
	default:
		return cond.Reason + ": " + cond.Message
	}
}

// stale says whether the controller has yet to observe a spec change (an
// operator raised a budget, resumed, approved): until it has, the status
// speaks of the old spec. A Campaign never observed is not stale, only not
// started.
func stale(c *v1alpha1.Campaign) bool {
	return c.Status.ObservedGeneration > 0 && c.Status.ObservedGeneration < c.Generation
}

// trippedBudget says whether the controller holds the Campaign back by a
// tripped failure budget (heldByBudget), and where: the budgets its spec
// and status show exceeded (exceededBudgets), else the Paused condition's
// message when its reason says so, else the datacenters whose own budget
// paused them.
func trippedBudget(c *v1alpha1.Campaign) (scope string, tripped bool) {
	if !heldByBudget(c) {
		return "", false
	}
	if trips := exceededBudgets(c); len(trips) > 0 {
		return tripsText(trips), true
	}
	if pausedByBudget(c) {
		if msg := pausedCondition(c).Message; msg != "" {
			return msg, true
		}
		return fmt.Sprintf("%d failed of %d servers", c.Status.Counts.Failed, c.Status.Counts.Targets), true
	}
	var dcs []string
	for _, dc := range c.Status.Datacenters {
		if dc.PausedReason == v1alpha1.CampaignReasonFailureBudgetExceeded {
			dcs = append(dcs, fmt.Sprintf("datacenter %s (%d failed of %d)", dc.Name, dc.Counts.Failed, dc.Counts.Targets))
		}
	}
	return strings.Join(dcs, ", "), true
}

// finished says whether waiting on the Campaign is over, and how: nil for
// Complete, an error for Failed, Cancelled or a tripped failure budget (it
// needs an operator before the Campaign can complete).
func finished(c *v1alpha1.Campaign) (bool, error) {
	switch c.Status.Phase {
	case v1alpha1.CampaignComplete:
		return true, nil
	case v1alpha1.CampaignFailed:
		msg := "a failure budget was exceeded"
		if cond := meta.FindStatusCondition(c.Status.Conditions, v1alpha1.CampaignConditionFailed); cond != nil {
			msg = conditionText(cond)
		}
		return true, fmt.Errorf("campaign %q failed: %s (%s)", c.Name, msg, countsText(c.Status.Counts))
	case v1alpha1.CampaignCancelled:
		return true, fmt.Errorf("campaign %q was cancelled (%s, %d cancelled)", c.Name, countsText(c.Status.Counts), c.Status.Counts.Cancelled)
	}
	if stale(c) {
		return false, nil
	}
	if scope, ok := trippedBudget(c); ok {
		return true, fmt.Errorf("campaign %q is paused: failure budget exceeded: %s; raise spec.failurePolicy.maxFailures to go on (kubectl stargate resume campaign/%s shows how)",
			c.Name, scope, c.Name)
	}
	return false, nil
}

// completedLine is what kubectl rollout status says at the end.
func completedLine(c *v1alpha1.Campaign) string {
	return fmt.Sprintf("campaign %q successfully completed", c.Name)
}

// waves is how many waves the Campaign has: status.waves, or the length of
// status.plan from a server that does not report it (plan lists at most 50).
func waves(c *v1alpha1.Campaign) int32 {
	return max(c.Status.Waves, int32(len(c.Status.Plan)))
}
