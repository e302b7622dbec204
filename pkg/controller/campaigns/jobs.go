package campaigns

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/campaign"
)

// createWorkers bounds the API calls of one sync in flight at once (Job
// creates, reads of finished Jobs, finalizer releases).
const createWorkers = 16

// Reasons a member ends without its Job having run to its end.
const (
	// ReasonJobRefused: the API refused the member's Job (its Hardware was
	// deleted, its Template is gone...). Counted as a failure, so that a
	// systematic refusal trips the budget instead of passing unnoticed.
	ReasonJobRefused = "JobRefused"
	// ReasonCampaignCancelled: spec.cancel, before the member's Job started.
	ReasonCampaignCancelled = "CampaignCancelled"
)

// observe counts the members whose Job finished since the last sync: the
// outcome goes to the ledger first, then the Job's campaign finalizer is
// removed. A started member without a Job (the create failed or never
// happened before a crash) gets it created again.
func (c *Controller) observe(ctx context.Context, camp *v1alpha1.Campaign, d *driven) error {
	p := d.progress
	changed := d.takeChanged()
	var look, strays []*member
	for key := range changed {
		m := p.byKey[key]
		if m != nil && m.final() && c.straying(d, m) {
			strays = append(strays, m)
		}
		if m == nil || m.state != stateStarted {
			continue
		}
		if cached, err := c.jobs.Jobs(m.Datacenter).Get(m.job); err == nil && !finished(cached) {
			continue // running
		}
		look = append(look, m)
	}
	// The reads, then the releases, a few at a time: a sync that found
	// hundreds of Jobs finished must not read them one after another
	// before it starts the next members.
	jobs := make([]*v1alpha1.Job, len(look))
	errs := make([]error, len(look))
	inParallel(len(look), func(i int) {
		jobs[i], errs[i] = c.client.StargateV1alpha1().Jobs(look[i].Datacenter).Get(ctx, look[i].job, metav1.GetOptions{})
	})
	outcomes := map[string]record{}
	var release []*v1alpha1.Job
	for i, m := range look {
		switch job, err := jobs[i], errs[i]; {
		case apierrors.IsNotFound(err):
			d.recreate = append(d.recreate, m)
		case err != nil:
			d.retryLater(m)
		case finished(job):
			state, reason := outcome(job)
			p.set(m, state, m.job, reason)
			m.counted = job.UID
			d.mu.Lock()
			if d.seen[m.key()] == job.UID {
				delete(d.seen, m.key()) // seen holds the members in flight, and strays
			}
			d.mu.Unlock()
			if state == stateFailed || (state == stateCancelled && job.Status.DCJobID != "") {
				// Its Hardware may be turning to error (a Job stopped at the
				// datacenter leaves it so, too): unavailable until the
				// troubled-Hardware cache can say.
				p.failedRecently[m.key()] = c.opts.Clock.Now()
			}
			outcomes[m.key()] = m.record()
			release = append(release, job)
		}
	}
	if err := c.writeLedger(ctx, camp, d, outcomes); err != nil {
		return err
	}
	release = append(release, c.stopStrays(ctx, camp, d, strays)...)
	// Counted: now released, with those a failed release left for this sync.
	for _, job := range release {
		d.unreleased[job.Namespace+"/"+job.Name] = job
	}
	pending := slices.Collect(maps.Values(d.unreleased))
	errs = make([]error, len(pending))
	inParallel(len(pending), func(i int) { errs[i] = c.release(ctx, pending[i]) })
	for i, job := range pending {
		if errs[i] == nil {
			delete(d.unreleased, job.Namespace+"/"+job.Name)
		}
	}
	return errors.Join(errs...)
}

// stopStrays deals with Jobs of members the ledger says are done: a create
// that landed after its member was recorded (an answer lost and the member
// then cancelled, or a driver that stalled mid-create while its successor
// went on) made a Job the Campaign never counted. Unfinished, it is asked
// to cancel (the Job controller ends it without running it if it was not
// sent yet); finished, it is returned for release. Its member's record
// stays as it is. Rare: a final member's Job changes only then.
func (c *Controller) stopStrays(ctx context.Context, camp *v1alpha1.Campaign, d *driven, strays []*member) []*v1alpha1.Job {
	var done []*v1alpha1.Job
	for _, m := range strays {
		job, err := c.client.StargateV1alpha1().Jobs(m.Datacenter).Get(ctx, jobName(camp, m), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			d.retryLater(m)
		case !metav1.IsControlledBy(job, camp):
		case finished(job):
			done = append(done, job) // released if it still holds the finalizer
		case !job.Spec.Cancel:
			klog.FromContext(ctx).Info("Cancelling a Job created for a member already recorded done", "job", klog.KObj(job), "member", m.key(), "state", m.state)
			if err := c.opts.Leading(ctx, DriverKey(camp.Name)); err != nil {
				d.retryLater(m)
				continue
			}
			if err := c.cancelJob(ctx, m.Datacenter, job.Name); err != nil && !apierrors.IsNotFound(err) {
				d.retryLater(m)
			}
		}
	}
	return done
}

// straying says whether final member m has a stray Job to deal with: the
// unfinished cache showed one (every Job passes through it: its creation
// is an event) other than the Job m was counted from, now or before. The
// events of m's own Job that raced its count cost no read.
func (c *Controller) straying(d *driven, m *member) bool {
	d.mu.Lock()
	uid, ok := d.seen[m.key()]
	d.mu.Unlock()
	if ok && uid != m.counted {
		d.strays.Insert(m.key())
	}
	return d.strays.Has(m.key())
}

// straysRunning names (namespace/name, the first 5) the Jobs of the
// Campaign that run for members the ledger says are done: until they
// ended, the Campaign is not.
func (c *Controller) straysRunning(camp *v1alpha1.Campaign, p *progress) []string {
	jobs, err := c.jobs.List(labels.SelectorFromSet(labels.Set{v1alpha1.CampaignLabel: camp.Name}))
	if err != nil {
		return nil
	}
	var names []string
	for _, job := range jobs {
		if m := p.byKey[job.Namespace+"/"+job.Spec.HardwareRef.Name]; metav1.IsControlledBy(job, camp) && (m == nil || m.final()) {
			names = append(names, job.Namespace+"/"+job.Name)
		}
	}
	slices.Sort(names)
	return names[:min(len(names), 5)]
}

// stopLateStrays deals with the Jobs of an ended Campaign whose creates
// landed after it ended (all its members are final): each is cancelled if
// unfinished and released once finished. Its Jobs change only then, but
// for one look through all of them when a replica starts driving it.
func (c *Controller) stopLateStrays(ctx context.Context, camp *v1alpha1.Campaign, d *driven) error {
	if !d.endedSwept {
		// Once per driver: a late create that landed while no replica drove
		// the Campaign brought no event here.
		err := c.eachJob(ctx, camp, func(job *v1alpha1.Job) error {
			switch {
			case !metav1.IsControlledBy(job, camp):
			case !finished(job):
				d.look(job.Namespace + "/" + job.Spec.HardwareRef.Name)
			case slices.Contains(job.Finalizers, v1alpha1.CampaignFinalizer):
				return c.release(ctx, job)
			}
			return nil
		})
		if err != nil {
			return err
		}
		d.endedSwept = true
	}
	changed := d.takeChanged()
	var strays []*member
	for key := range changed {
		dc, name, _ := strings.Cut(key, "/")
		strays = append(strays, &member{Member: campaign.Member{Datacenter: dc, Name: name}, state: stateCancelled})
	}
	var errs []error
	for _, job := range c.stopStrays(ctx, camp, d, strays) {
		if err := c.release(ctx, job); err != nil {
			errs = append(errs, err)
			d.look(job.Namespace + "/" + job.Spec.HardwareRef.Name) // finished: no event will bring it back
		}
	}
	return errors.Join(errs...)
}

// inParallel runs f(0..n-1) on at most createWorkers goroutines, every
// piece of it (a background context: results are read after it returns).
func inParallel(n int, f func(i int)) {
	workqueue.ParallelizeUntil(context.Background(), createWorkers, n, f)
}

func finished(job *v1alpha1.Job) bool {
	return job.Status.Phase == v1alpha1.JobSucceeded || job.Status.Phase == v1alpha1.JobFailed
}

// outcome maps how a Job ended to a member state. A Job stopped (spec.cancel
// or a delete reached it before it finished) is cancelled; one that failed
// first is a failure, even if it was cancelled or deleted afterwards (a TTL
// of 0 deletes a failed Job at once): its failure counts against the budgets.
func outcome(job *v1alpha1.Job) (state, reason string) {
	switch {
	case job.Status.Phase == v1alpha1.JobSucceeded:
		return stateSucceeded, ""
	case job.Status.Reason == v1alpha1.JobReasonCancelled || job.Status.Reason == v1alpha1.JobReasonDeleted:
		return stateCancelled, job.Status.Reason
	}
	return stateFailed, job.Status.Reason
}

// writeLedger records recs; a failed write forgets the progress in memory,
// which is ahead of the ledger, so the next sync reloads it.
func (c *Controller) writeLedger(ctx context.Context, camp *v1alpha1.Campaign, d *driven, recs map[string]record) error {
	if len(recs) == 0 {
		return nil
	}
	err := c.opts.Leading(ctx, DriverKey(camp.Name))
	if err == nil {
		err = c.ledger.write(ctx, camp.Name, camp.UID, recs)
	}
	if err != nil {
		// The progress in memory is ahead of the ledger: reload it, and
		// forget what pointed into it.
		d.progress, d.recreate = nil, nil
	}
	return err
}

// act carries a step out: members given up are recorded cancelled, members
// to start are recorded started and then get their Job, and running Jobs
// in a stopped scope are asked to cancel. Members recorded started whose
// Job does not exist yet (a busy Hardware, an API error, a crash) get it
// only when the step would let them start now.
func (c *Controller) act(ctx context.Context, camp *v1alpha1.Campaign, d *driven, s *step) error {
	p := d.progress
	recs := map[string]record{}
	reason := ReasonCampaignCancelled
	if !camp.Spec.Cancel {
		reason = v1alpha1.CampaignReasonFailureBudgetExceeded
	}
	giveUp := func(members []*member) {
		for _, m := range members {
			if m.state == statePending {
				p.set(m, stateCancelled, "", reason)
				recs[m.key()] = m.record()
			}
		}
	}
	if s.cancelAll && !p.cancelledAll {
		giveUp(p.members) // once: no member becomes pending again
		p.cancelledAll = true
	}
	for dc := range s.cancelDCs {
		if !p.cancelledDCs[dc] {
			giveUp(p.byDC[dc])
			p.cancelledDCs[dc] = true
		}
	}
	var toCreate []*member
	for _, m := range d.recreate {
		switch {
		case m.state != stateStarted:
		case s.cancelAll || s.cancelDCs[m.Datacenter]:
			p.set(m, stateCancelled, "", reason) // its Job was never created
			recs[m.key()] = m.record()
		case s.paused != "" || s.dcReason[m.Datacenter] != "":
			d.retryLater(m) // it holds its place in the limits meanwhile
		default:
			toCreate = append(toCreate, m)
		}
	}
	d.recreate = nil
	for _, m := range s.start {
		p.set(m, stateStarted, jobName(camp, m), "")
		recs[m.key()] = m.record()
		toCreate = append(toCreate, m)
	}
	if err := c.writeLedger(ctx, camp, d, recs); err != nil {
		return err
	}
	if err := c.createJobs(ctx, camp, d, toCreate); err != nil {
		return err
	}
	return c.stopRunning(ctx, camp, d, s)
}

// retryLater looks at started member m again on a later sync.
func (d *driven) retryLater(m *member) {
	d.look(m.key())
	d.retry = true
}

// look has the next observe look at member key (datacenter/hardware).
func (d *driven) look(key string) {
	d.mu.Lock()
	d.changed.Insert(key)
	d.mu.Unlock()
}

// takeChanged returns the members changed since it was last called.
func (d *driven) takeChanged() sets.Set[string] {
	d.mu.Lock()
	defer d.mu.Unlock()
	changed := d.changed
	d.changed = sets.New[string]()
	return changed
}

// createJobs creates the Jobs of members recorded started, a few at a time.
// A Hardware busy with another Job, or an API error, leaves the member
// started and tried again; a refusal fails it.
func (c *Controller) createJobs(ctx context.Context, camp *v1alpha1.Campaign, d *driven, members []*member) error {
	if len(members) == 0 {
		return nil
	}
	if err := c.opts.Leading(ctx, DriverKey(camp.Name)); err != nil {
		for _, m := range members {
			d.retryLater(m)
		}
		return err
	}
	errs := make([]error, len(members))
	inParallel(len(members), func(i int) { errs[i] = c.createJob(ctx, camp, members[i]) })
	refused := map[string]record{}
	for i, err := range errs {
		m := members[i]
		switch {
		case err == nil, apierrors.IsAlreadyExists(err):
		case apierrors.IsConflict(err), apierrors.IsServerTimeout(err), apierrors.IsTimeout(err), apierrors.IsTooManyRequests(err),
			apierrors.IsServiceUnavailable(err), apierrors.IsInternalError(err), !isStatus(err):
			d.retryLater(m)
		default:
			klog.FromContext(ctx).Info("A campaign member's Job was refused", "campaign", camp.Name, "hardware", klog.KRef(m.Datacenter, m.Name), "err", err)
			p := d.progress
			p.set(m, stateFailed, m.job, ReasonJobRefused+": "+truncate(err.Error(), 200))
			refused[m.key()] = m.record()
		}
	}
	return c.writeLedger(ctx, camp, d, refused)
}

func isStatus(err error) bool {
	_, ok := err.(apierrors.APIStatus)
	return ok
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// createJob creates member m's Job: the Campaign's label, finalizer and
// owner reference, the Hardware's label, the spec from the Campaign.
func (c *Controller) createJob(ctx context.Context, camp *v1alpha1.Campaign, m *member) error {
	spec := camp.Spec
	job := &v1alpha1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name: m.job, Namespace: m.Datacenter,
			Labels:     map[string]string{v1alpha1.CampaignLabel: camp.Name, v1alpha1.HardwareLabel: m.Name},
			Finalizers: []string{v1alpha1.CampaignFinalizer},
			OwnerReferences: []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Campaign",
				Name: camp.Name, UID: camp.UID, Controller: ptr.To(true)}},
		},
		Spec: v1alpha1.JobSpec{
			HardwareRef: v1alpha1.LocalObjectReference{Name: m.Name}, Operation: spec.Operation, TemplateRef: spec.TemplateRef,
			BackoffLimit: spec.JobTemplate.BackoffLimit, ActiveDeadlineSeconds: spec.JobTemplate.ActiveDeadlineSeconds,
			TTLSecondsAfterFinished: spec.JobTemplate.TTLSecondsAfterFinished,
		},
	}
	if len(validation.IsValidLabelValue(m.Name)) > 0 {
		delete(job.Labels, v1alpha1.HardwareLabel) // a name longer than a label value; spec.hardwareRef.name still says it
	}
	_, err := c.client.StargateV1alpha1().Jobs(m.Datacenter).Create(ctx, job, metav1.CreateOptions{})
	return err
}

// jobName is member m's Job's name: the same on every attempt (a create
// repeated after a crash finds it there), unique to this Campaign (its UID
// is in the suffix, so a Campaign recreated under the same name does not
// collide with its predecessor's finished Jobs).
func jobName(camp *v1alpha1.Campaign, m *member) string {
	h := fnv.New32a()
	fmt.Fprintf(h, "%s/%s/%s", camp.UID, m.Datacenter, m.Name)
	base := m.Name + "-" + camp.Name
	if len(base) > 243 {
		base = strings.TrimRight(base[:243], "-.")
	}
	return fmt.Sprintf("%s-%08x", base, h.Sum32())
}

// stopRunning asks the running Jobs of stopped scopes to cancel, once. A
// member whose Job is not there was never created (the finalizer keeps
// every created Job until counted): it is recorded cancelled.
func (c *Controller) stopRunning(ctx context.Context, camp *v1alpha1.Campaign, d *driven, s *step) error {
	if len(s.stopRunning) == 0 {
		return nil
	}
	p := d.progress
	never := map[string]record{}
	var stop []*member
	for m := range p.inFlight {
		if !m.cancelSent && (s.stopRunning[""] || s.stopRunning[m.Datacenter]) {
			stop = append(stop, m)
		}
	}
	if len(stop) == 0 {
		return nil
	}
	if err := c.opts.Leading(ctx, DriverKey(camp.Name)); err != nil {
		return err
	}
	for _, m := range stop {
		switch err := c.cancelJob(ctx, m.Datacenter, m.job); {
		case apierrors.IsNotFound(err):
			never[m.key()] = record{}
		case err != nil:
			return err
		}
		m.cancelSent = true
	}
	for key := range never {
		m := p.byKey[key]
		p.set(m, stateCancelled, "", ReasonCampaignCancelled)
		never[key] = m.record()
	}
	return c.writeLedger(ctx, camp, d, never)
}

// cancelJob asks Job namespace/name to cancel (spec.cancel=true).
func (c *Controller) cancelJob(ctx context.Context, namespace, name string) error {
	_, err := c.client.StargateV1alpha1().Jobs(namespace).Patch(ctx, name, types.MergePatchType,
		[]byte(`{"spec":{"cancel":true}}`), metav1.PatchOptions{})
	return err
}

// release removes the Campaign's finalizer from a Job whose outcome is in the ledger.
func (c *Controller) release(ctx context.Context, job *v1alpha1.Job) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if !slices.Contains(job.Finalizers, v1alpha1.CampaignFinalizer) {
			return nil
		}
		updated := job.DeepCopy()
		updated.Finalizers = slices.DeleteFunc(updated.Finalizers, func(f string) bool { return f == v1alpha1.CampaignFinalizer })
		_, err := c.client.StargateV1alpha1().Jobs(job.Namespace).Update(ctx, updated, metav1.UpdateOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return nil
		case apierrors.IsConflict(err):
			fresh, getErr := c.client.StargateV1alpha1().Jobs(job.Namespace).Get(ctx, job.Name, metav1.GetOptions{})
			if getErr != nil {
				return getErr
			}
			job = fresh
		}
		return err
	})
}

// eachJob calls f with each Job of the Campaign (by its label), page by page.
func (c *Controller) eachJob(ctx context.Context, camp *v1alpha1.Campaign, f func(*v1alpha1.Job) error) error {
	opts := metav1.ListOptions{LabelSelector: v1alpha1.CampaignLabel + "=" + camp.Name, Limit: 500}
	for {
		page, err := c.client.StargateV1alpha1().Jobs(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return err
		}
		for i := range page.Items {
			if err := f(&page.Items[i]); err != nil {
				return err
			}
		}
		if page.Continue == "" {
			return nil
		}
		opts.Continue = page.Continue
	}
}

// releaseCounted releases the finished Jobs whose outcome the ledger has,
// and those of another Campaign of the same name (a predecessor); a Job of
// a member the ledger says is done that is not that (a stray: see
// stopStrays) goes to the next sync's observe.
func (c *Controller) releaseCounted(ctx context.Context, camp *v1alpha1.Campaign, d *driven) error {
	p := d.progress
	return c.eachJob(ctx, camp, func(job *v1alpha1.Job) error {
		if !slices.Contains(job.Finalizers, v1alpha1.CampaignFinalizer) {
			return nil
		}
		m := p.byKey[job.Namespace+"/"+job.Spec.HardwareRef.Name]
		switch {
		case !metav1.IsControlledBy(job, camp):
			return c.release(ctx, job)
		case m == nil || !m.final():
		case m.job == job.Name && finished(job):
			return c.release(ctx, job)
		default:
			d.mu.Lock()
			d.strays.Insert(m.key())
			d.changed.Insert(m.key())
			d.mu.Unlock()
		}
		return nil
	})
}

// releaseAll releases every Job of a Campaign being deleted.
func (c *Controller) releaseAll(ctx context.Context, camp *v1alpha1.Campaign) error {
	return c.eachJob(ctx, camp, func(job *v1alpha1.Job) error { return c.release(ctx, job) })
}
