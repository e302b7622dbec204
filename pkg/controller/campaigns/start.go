package campaigns

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/campaign"
)

// start fixes a Campaign's members: it resolves its Template in every
// selected datacenter (one missing holds the start: Validated=False),
// lists the selected Hardware, plans the waves, writes the ledger, and only
// then records startTime, so a crash before that plans again from scratch.
//
// The cache may lag behind the write that started it (this replica's, or
// the previous driver's): the Campaign is read from etcd first, and the
// ledger is replaced only when that read says it never started. No Job is
// created before startTime is written, so a plan replaced is one no Job
// came from.
func (c *Controller) start(ctx context.Context, camp *v1alpha1.Campaign, d *driven) (time.Duration, error) {
	logger := klog.FromContext(ctx).WithValues("campaign", camp.Name)
	live, err := c.client.StargateV1alpha1().Campaigns().Get(ctx, camp.Name, metav1.GetOptions{})
	if err != nil {
		return 0, err
	}
	if live.UID != camp.UID || live.Status.StartTime != nil || live.DeletionTimestamp != nil {
		return 100 * time.Millisecond, nil // the cache catches up
	}
	camp = live
	if camp.Spec.Cancel {
		return 0, c.cancelUnstarted(ctx, camp)
	}
	dcs, err := c.selectedDatacenters(camp)
	if err != nil {
		return 0, c.invalid(ctx, camp, "InvalidSelector", err.Error())
	}
	osVersion := map[string]string{}
	var missing []string
	if camp.Spec.Operation == v1alpha1.OperationRepave && camp.Spec.TemplateRef != nil {
		for _, dc := range dcs {
			tmpl, err := c.templates.Templates(dc.Name).Get(camp.Spec.TemplateRef.Name)
			if apierrors.IsNotFound(err) {
				missing = append(missing, dc.Name)
				continue
			}
			if err != nil {
				return 0, err
			}
			osVersion[dc.Name] = tmpl.Spec.OSVersion
		}
	}
	if len(missing) > 0 {
		return 30 * time.Second, c.invalid(ctx, camp, "TemplateNotFound", fmt.Sprintf(
			"Template %q does not exist in selected datacenter(s) %s: create it there, or narrow spec.datacenterSelector",
			camp.Spec.TemplateRef.Name, strings.Join(missing, ", ")))
	}
	if err := c.opts.Leading(ctx, DriverKey(camp.Name)); err != nil {
		return 0, err
	}
	// The finalizer first: a Campaign deleted from here on gets its ledger
	// dropped and its Jobs released.
	if camp, err = c.ensureFinalizer(ctx, camp); err != nil {
		return 0, err
	}
	candidates, err := c.candidates(ctx, camp, dcs)
	if err != nil {
		return 0, err
	}
	plan := campaign.NewPlan(&camp.Spec, candidates, osVersion)
	if err := c.record(ctx, camp, plan); err != nil {
		return 0, err
	}
	now := c.opts.Clock.Now()
	status := camp.Status.DeepCopy()
	status.Plan, status.Counts, status.Datacenters = plan.Status()
	status.Waves = plan.Waves()
	status.StartTime = metaTime(now)
	status.Phase = v1alpha1.CampaignRunning
	status.ObservedGeneration = camp.Generation
	setCondition(status, v1alpha1.CampaignConditionValidated, true, "Started", fmt.Sprintf(
		"%d members fixed in %d datacenter(s), %d already up to date", status.Counts.Targets-status.Counts.Skipped, len(dcs), status.Counts.Skipped), camp.Generation, now)
	if len(plan.Members) > 0 {
		status.CurrentWave, status.WaveStartTime = 1, metaTime(now)
	}
	updated := camp.DeepCopy()
	updated.Status = *status
	if _, err := c.client.StargateV1alpha1().Campaigns().UpdateStatus(ctx, updated, metav1.UpdateOptions{}); err != nil {
		return 0, err
	}
	logger.Info("Campaign started", "members", len(plan.Members), "waves", plan.Waves(), "skipped", status.Counts.Skipped)
	d.progress = nil // loaded from the ledger on the next sync
	return time.Millisecond, nil
}

// cancelUnstarted ends a Campaign cancelled before it started (one held by
// a missing Template, say): no member was fixed and no Job created, so it
// ends Cancelled at once; a plan half written by a driver that died is dropped.
func (c *Controller) cancelUnstarted(ctx context.Context, camp *v1alpha1.Campaign) error {
	if err := c.opts.Leading(ctx, DriverKey(camp.Name)); err != nil {
		return err
	}
	if err := c.ledger.drop(ctx, camp.Name, camp.UID); err != nil {
		return err
	}
	now := c.opts.Clock.Now()
	updated := camp.DeepCopy()
	updated.Status.Phase = v1alpha1.CampaignCancelled
	updated.Status.CompletionTime = metaTime(now)
	updated.Status.ObservedGeneration = camp.Generation
	const message = "spec.cancel is true: cancelled before it started; no Job was created"
	setCondition(&updated.Status, v1alpha1.CampaignConditionProgressing, false, "Cancelled", message, camp.Generation, now)
	setCancelled(&updated.Status, message, camp.Generation, now)
	_, err := c.client.StargateV1alpha1().Campaigns().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	if err == nil {
		klog.FromContext(ctx).Info("Campaign cancelled before it started", "campaign", camp.Name)
	}
	return err
}

// record writes the plan into the ledger, replacing a half-written one.
func (c *Controller) record(ctx context.Context, camp *v1alpha1.Campaign, plan *campaign.Plan) error {
	// Listing the Hardware took a while: this replica must still drive it.
	if err := c.opts.Leading(ctx, DriverKey(camp.Name)); err != nil {
		return err
	}
	if err := c.ledger.drop(ctx, camp.Name, camp.UID); err != nil {
		return err
	}
	recs := make(map[string]record, len(plan.Members))
	for i, m := range plan.Members {
		recs[m.Datacenter+"/"+m.Name] = record{Wave: m.Wave, Domain: m.Domain, State: statePending, Order: i}
	}
	if err := c.ledger.write(ctx, camp.Name, camp.UID, recs); err != nil {
		return err
	}
	return c.ledger.seal(ctx, camp.Name, camp.UID, seal{Members: len(recs), Skipped: plan.Skipped})
}

// selectedDatacenters lists the Datacenters spec.datacenterSelector selects.
func (c *Controller) selectedDatacenters(camp *v1alpha1.Campaign) ([]*v1alpha1.Datacenter, error) {
	selector := labels.Everything()
	if camp.Spec.DatacenterSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(camp.Spec.DatacenterSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.datacenterSelector: %w", err)
		}
		selector = s
	}
	dcs, err := c.dcs.List(selector)
	if err != nil {
		return nil, err
	}
	slices.SortFunc(dcs, func(a, b *v1alpha1.Datacenter) int { return strings.Compare(a.Name, b.Name) })
	return dcs, nil
}

// candidates lists, page by page, the Hardware spec.hardwareSelector
// selects in each datacenter.
func (c *Controller) candidates(ctx context.Context, camp *v1alpha1.Campaign, dcs []*v1alpha1.Datacenter) ([]campaign.Candidate, error) {
	selector := ""
	if camp.Spec.HardwareSelector != nil {
		s, err := metav1.LabelSelectorAsSelector(camp.Spec.HardwareSelector)
		if err != nil {
			return nil, fmt.Errorf("spec.hardwareSelector: %w", err)
		}
		selector = s.String()
	}
	var out []campaign.Candidate
	for _, dc := range dcs {
		opts := metav1.ListOptions{LabelSelector: selector, Limit: 1000}
		for {
			page, err := c.client.StargateV1alpha1().Hardwares(dc.Name).List(ctx, opts)
			if err != nil {
				return nil, err
			}
			for i := range page.Items {
				hw := &page.Items[i]
				out = append(out, campaign.Candidate{Datacenter: dc.Name, Name: hw.Name, Labels: hw.Labels, CurrentOS: hw.Status.CurrentOS})
			}
			if page.Continue == "" {
				break
			}
			opts.Continue = page.Continue
		}
	}
	return out, nil
}

// invalid records why a Campaign cannot start.
func (c *Controller) invalid(ctx context.Context, camp *v1alpha1.Campaign, reason, message string) error {
	status := camp.Status.DeepCopy()
	status.Phase = v1alpha1.CampaignPending
	status.ObservedGeneration = camp.Generation
	setCondition(status, v1alpha1.CampaignConditionValidated, false, reason, message, camp.Generation, c.opts.Clock.Now())
	if statusEqual(status, &camp.Status) {
		return nil
	}
	updated := camp.DeepCopy()
	updated.Status = *status
	_, err := c.client.StargateV1alpha1().Campaigns().UpdateStatus(ctx, updated, metav1.UpdateOptions{})
	return err
}

// load rebuilds a started Campaign's progress from its ledger, and looks
// at every Job the Campaign holds a finalizer on: started members are
// observed again, and finished Jobs whose outcome the ledger already has
// (a crash came between the two writes) are released.
func (c *Controller) load(ctx context.Context, camp *v1alpha1.Campaign, d *driven) error {
	s, recs, err := c.ledger.load(ctx, camp.UID)
	if err != nil {
		return err
	}
	if s == nil {
		return fmt.Errorf("campaign %s started but its ledger is missing under %s: its members cannot be known; delete and recreate the Campaign", camp.Name, c.ledger.base(camp.UID))
	}
	p := newProgress(camp.UID, recs, s.Skipped)
	p.failedRecently = d.failedRecently
	d.progress, d.recreate = p, nil
	d.wave = max(camp.Status.CurrentWave, p.highestWave, min(p.waves, 1))
	if camp.Status.CurrentWave == d.wave {
		d.waveStart = timeOf(camp.Status.WaveStartTime)
		d.waveFinish = timeOf(camp.Status.WaveFinishTime)
	}
	d.mu.Lock()
	for _, m := range p.members {
		if m.state == stateStarted {
			d.changed.Insert(m.key())
		}
	}
	// The members' counted UIDs are not in the ledger: what seen holds of
	// Jobs counted before would read as strays. releaseCounted, below,
	// finds the real ones from a list.
	clear(d.seen)
	d.mu.Unlock()
	return c.releaseCounted(ctx, camp, d)
}

func timeOf(t *metav1.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.Time
}

// ensureFinalizer puts CampaignFinalizer on the Campaign.
func (c *Controller) ensureFinalizer(ctx context.Context, camp *v1alpha1.Campaign) (*v1alpha1.Campaign, error) {
	if slices.Contains(camp.Finalizers, v1alpha1.CampaignFinalizer) {
		return camp, nil
	}
	updated := camp.DeepCopy()
	updated.Finalizers = append(updated.Finalizers, v1alpha1.CampaignFinalizer)
	return c.client.StargateV1alpha1().Campaigns().Update(ctx, updated, metav1.UpdateOptions{})
}

// finalize releases a deleted Campaign's Jobs and drops its ledger, then
// lets it go. Its Jobs remain (garbage collection of the owner reference,
// where it runs, deletes them as it does a Deployment's Pods).
func (c *Controller) finalize(ctx context.Context, camp *v1alpha1.Campaign, d *driven) error {
	if !slices.Contains(camp.Finalizers, v1alpha1.CampaignFinalizer) {
		return nil
	}
	if err := c.releaseAll(ctx, camp); err != nil {
		return err
	}
	if err := c.opts.Leading(ctx, DriverKey(camp.Name)); err != nil {
		return err
	}
	if err := c.ledger.drop(ctx, camp.Name, camp.UID); err != nil {
		return err
	}
	d.progress = nil
	updated := camp.DeepCopy()
	updated.Finalizers = slices.DeleteFunc(updated.Finalizers, func(f string) bool { return f == v1alpha1.CampaignFinalizer })
	_, err := c.client.StargateV1alpha1().Campaigns().Update(ctx, updated, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// expire deletes an ended Campaign past spec.ttlSecondsAfterFinished.
func (c *Controller) expire(ctx context.Context, camp *v1alpha1.Campaign) (time.Duration, error) {
	if camp.Spec.TTLSecondsAfterFinished == nil || camp.Status.CompletionTime == nil {
		return 0, nil
	}
	at := camp.Status.CompletionTime.Add(time.Duration(*camp.Spec.TTLSecondsAfterFinished) * time.Second)
	if left := at.Sub(c.opts.Clock.Now()); left > 0 {
		return left, nil
	}
	err := c.client.StargateV1alpha1().Campaigns().Delete(ctx, camp.Name, metav1.DeleteOptions{
		Preconditions: &metav1.Preconditions{UID: &camp.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return 0, nil
	}
	return 0, err
}

// setCondition sets a condition, keeping its transition time when its status holds.
func setCondition(status *v1alpha1.CampaignStatus, typ string, value bool, reason, message string, generation int64, now time.Time) {
	s := metav1.ConditionFalse
	if value {
		s = metav1.ConditionTrue
	}
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{Type: typ, Status: s, Reason: reason, Message: message,
		ObservedGeneration: generation, LastTransitionTime: metav1.Time{Time: now.Truncate(time.Second)}})
}
