package campaigns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
)

// writeStatus writes what the step found into the Campaign's status, when
// it changed, at most once per StatusInterval (it says when to come back
// to write a change held back).
func (c *Controller) writeStatus(ctx context.Context, camp *v1alpha1.Campaign, d *driven, s *step) (time.Duration, error) {
	p := d.progress
	if p == nil {
		return 0, nil
	}
	now := c.opts.Clock.Now()
	status := c.buildStatus(camp, d, s, now)
	var after time.Duration
	if d.retry {
		d.retry, after = false, c.opts.RetryInterval
	}
	if statusEqual(status, &camp.Status) {
		return after, nil
	}
	if wait := d.lastStatus.Add(c.opts.StatusInterval).Sub(now); wait > 0 && !ended(status.Phase) {
		return minPositive(after, wait), nil
	}
	updated := camp.DeepCopy()
	updated.Status = *status
	if _, err := c.client.StargateV1alpha1().Campaigns().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return 0, err
	}
	d.lastStatus = now
	return after, nil
}

func (c *Controller) buildStatus(camp *v1alpha1.Campaign, d *driven, s *step, now time.Time) *v1alpha1.CampaignStatus {
	p := d.progress
	status := camp.Status.DeepCopy()
	total := p.total()
	status.Counts = total
	status.ObservedGeneration = camp.Generation
	status.CurrentWave, status.Waves = d.wave, p.waves
	status.WaveStartTime, status.WaveFinishTime = metaTime(d.waveStart), metaTime(d.waveFinish)
	status.Failures = slices.Clone(p.failures)
	status.Datacenters = status.Datacenters[:0:0]
	var blocked []string
	allBlocked := true
	for _, dc := range p.datacenters() {
		counts := *p.counts[dc]
		entry := v1alpha1.CampaignDatacenterStatus{Name: dc, Counts: counts}
		if counts.Pending > 0 {
			entry.PausedReason = s.dcReason[dc]
			if entry.PausedReason == "" {
				entry.PausedReason = s.paused
			}
			if next, ok := s.nextWindow[dc]; ok {
				entry.NextWindow = metaTime(next)
			}
			if entry.PausedReason == "" {
				allBlocked = false
			} else {
				blocked = append(blocked, dc+": "+entry.PausedReason)
			}
		}
		status.Datacenters = append(status.Datacenters, entry)
	}

	gen := camp.Generation
	done := total.Succeeded + total.Failed + total.Cancelled + total.Skipped
	progressMsg := fmt.Sprintf("wave %d/%d: %d of %d servers done, %d running, %d failed", d.wave, p.waves, done, total.Targets, total.Running, total.Failed)
	if s.heldBy != "" {
		progressMsg += "; held back by " + s.heldBy
	}
	var strays []string
	if total.Pending == 0 && total.Running == 0 {
		strays = c.straysRunning(camp, p)
	}
	switch {
	case total.Pending == 0 && total.Running == 0 && len(strays) > 0:
		status.Phase = v1alpha1.CampaignRunning
		progressMsg += fmt.Sprintf("; waiting for Job(s) created late for members already done, asked to cancel: %s", strings.Join(strays, ", "))
	case total.Pending == 0 && total.Running == 0:
		status.Phase = v1alpha1.CampaignComplete
		switch {
		case camp.Spec.Cancel:
			status.Phase = v1alpha1.CampaignCancelled
		case len(s.tripped) > 0:
			status.Phase = v1alpha1.CampaignFailed
		}
		if status.CompletionTime == nil {
			status.CompletionTime = metaTime(now)
		}
	case s.paused != "" || (allBlocked && total.Running == 0):
		status.Phase = v1alpha1.CampaignPaused
	default:
		status.Phase = v1alpha1.CampaignRunning
	}

	// Paused: the whole Campaign, or some of its datacenters.
	switch {
	case s.paused != "":
		setCondition(status, v1alpha1.CampaignConditionPaused, true, s.paused, s.pausedMessage, gen, now)
	case len(blocked) > 0 && !ended(status.Phase):
		reason := firstReason(s, p)
		msg := "datacenters held: " + strings.Join(blocked, ", ")
		if len(s.tripped) > 0 {
			msg += "; failure budget exceeded (" + strings.Join(s.tripped, "; ") + "): raise spec.failurePolicy.maxFailures to go on there"
		}
		setCondition(status, v1alpha1.CampaignConditionPaused, true, reason, msg, gen, now)
	default:
		meta.RemoveStatusCondition(&status.Conditions, v1alpha1.CampaignConditionPaused)
	}
	switch status.Phase {
	case v1alpha1.CampaignRunning:
		setCondition(status, v1alpha1.CampaignConditionProgressing, true, "Running", progressMsg, gen, now)
	case v1alpha1.CampaignPaused:
		setCondition(status, v1alpha1.CampaignConditionProgressing, false, "Paused", progressMsg, gen, now)
	case v1alpha1.CampaignComplete:
		setCondition(status, v1alpha1.CampaignConditionProgressing, false, "Complete", progressMsg, gen, now)
		setCondition(status, v1alpha1.CampaignConditionComplete, true, "Complete", progressMsg, gen, now)
	case v1alpha1.CampaignFailed:
		msg := "failure budget exceeded (" + strings.Join(s.tripped, "; ") + "); " + progressMsg
		setCondition(status, v1alpha1.CampaignConditionProgressing, false, "Failed", progressMsg, gen, now)
		setCondition(status, v1alpha1.CampaignConditionFailed, true, v1alpha1.CampaignReasonFailureBudgetExceeded, msg, gen, now)
	case v1alpha1.CampaignCancelled:
		setCondition(status, v1alpha1.CampaignConditionProgressing, false, "Cancelled", progressMsg, gen, now)
		setCancelled(status, "spec.cancel is true: "+progressMsg, gen, now)
	}
	return status
}

// setCancelled sets Failed=True with reason Cancelled on a Campaign that
// ended Cancelled: it will never be Complete, and `kubectl wait
// --for=condition=Failed` (or a wait on Complete, which then times out)
// must be able to tell.
func setCancelled(status *v1alpha1.CampaignStatus, message string, generation int64, now time.Time) {
	setCondition(status, v1alpha1.CampaignConditionFailed, true, "Cancelled", message, generation, now)
}

// firstReason is the pause reason of the first held datacenter, a
// tripped budget first.
func firstReason(s *step, p *progress) string {
	if len(s.tripped) > 0 {
		return v1alpha1.CampaignReasonFailureBudgetExceeded
	}
	for _, dc := range p.datacenters() {
		if r := s.dcReason[dc]; r != "" && p.counts[dc].Pending > 0 { // as buildStatus lists them held
			return r
		}
	}
	return "DatacenterHeld"
}

func metaTime(t time.Time) *metav1.Time {
	if t.IsZero() {
		return nil
	}
	return &metav1.Time{Time: t.Truncate(time.Second)} // as it reads back from the API
}
