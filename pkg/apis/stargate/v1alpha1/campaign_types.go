package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Campaign carries one operation (a repave to a Template, a reboot, a power
// change) over many Hardware in many datacenters, in waves, never making more
// servers unavailable than its limits allow, and pausing or stopping when
// failures exceed its budgets. Its members are fixed when it starts.
type Campaign struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what to do, to which servers, and how carefully.
	Spec CampaignSpec `json:"spec"`
	// status is the Campaign's progress. Written only through the status subresource.
	// +optional
	Status CampaignStatus `json:"status,omitempty"`
}

// CampaignSpec is what a Campaign does and within which limits.
type CampaignSpec struct {
	// operation is one of repave, reboot, power-off or power-on. Immutable.
	Operation Operation `json:"operation"`
	// templateRef names the Template a repave installs, looked up in each
	// selected datacenter's namespace. Required for repave, forbidden
	// otherwise. Immutable.
	// +optional
	TemplateRef *LocalObjectReference `json:"templateRef,omitempty"`
	// jobTemplate is passed to each Job the Campaign creates.
	// +optional
	JobTemplate CampaignJobTemplate `json:"jobTemplate,omitempty"`
	// hardwareSelector selects the Hardware in the selected datacenters; empty
	// selects all of them. Immutable.
	// +optional
	HardwareSelector *metav1.LabelSelector `json:"hardwareSelector,omitempty"`
	// datacenterSelector selects Datacenters by their labels; empty selects
	// every Datacenter. Immutable.
	// +optional
	DatacenterSelector *metav1.LabelSelector `json:"datacenterSelector,omitempty"`
	// skipUpToDate counts as skipped, without a Job, the Hardware whose
	// status.currentOS already is the Template's osVersion. Repave only;
	// defaults to true for repave. Immutable.
	// +optional
	SkipUpToDate *bool `json:"skipUpToDate,omitempty"`
	// waves split the members into successive groups: a wave starts once the
	// previous one finished, baked and (if asked) was approved. The last entry
	// repeats until every member has a wave. Defaults to one wave of 100%.
	// Immutable once started.
	// +optional
	// +listType=atomic
	Waves []CampaignWave `json:"waves,omitempty"`
	// maxUnavailable caps the members unavailable at any instant: a member is
	// unavailable while a Job of any origin runs on it, or while its state is
	// error or unknown. Defaults to global: 10% when none is set.
	// +optional
	MaxUnavailable CampaignMaxUnavailable `json:"maxUnavailable,omitempty"`
	// failureDomainLabel is the Hardware label whose values are failure
	// domains (for example topology.stargate.io/rack) for
	// maxUnavailable.perFailureDomain and maxFailureDomainsInFlight. Immutable.
	// +optional
	FailureDomainLabel string `json:"failureDomainLabel,omitempty"`
	// maxFailureDomainsInFlight caps how many failure domains have a member
	// unavailable at once. Needs failureDomainLabel.
	// +optional
	MaxFailureDomainsInFlight *int32 `json:"maxFailureDomainsInFlight,omitempty"`
	// failurePolicy says how many failed Jobs to bear, and what to do past that.
	// +optional
	FailurePolicy CampaignFailurePolicy `json:"failurePolicy,omitempty"`
	// maintenanceWindows restrict when Jobs start: in a datacenter that one or
	// more windows select, a Job starts only inside one of them and no later
	// than its end minus its cutoff; Jobs already running finish. A datacenter
	// no window selects is not restricted.
	// +optional
	// +listType=atomic
	MaintenanceWindows []MaintenanceWindow `json:"maintenanceWindows,omitempty"`
	// paused, while true, starts no new Job; running ones finish.
	// +optional
	Paused bool `json:"paused,omitempty"`
	// approvedWaves is the number of the last wave an operator approved:
	// a wave with requireApproval starts only when approvedWaves reaches its
	// number (waves count from 1). It cannot decrease.
	// +optional
	ApprovedWaves int32 `json:"approvedWaves,omitempty"`
	// cancel, once true, starts no new Job, cancels the running ones and ends
	// the Campaign Cancelled. It cannot be unset.
	// +optional
	Cancel bool `json:"cancel,omitempty"`
	// ttlSecondsAfterFinished deletes the Campaign this many seconds after it
	// ended. Its Jobs have an owner reference to it: behind kube-apiserver,
	// the garbage collector deletes them with it; standalone (no garbage
	// collector), they remain until their own ttlSecondsAfterFinished.
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// CampaignJobTemplate is the part of each Job's spec a Campaign passes on.
type CampaignJobTemplate struct {
	// backoffLimit passes to each Job's spec.backoffLimit. Defaults to 3.
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// activeDeadlineSeconds passes to each Job's spec.activeDeadlineSeconds.
	// +optional
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	// ttlSecondsAfterFinished passes to each Job's spec.ttlSecondsAfterFinished.
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// CampaignWave is one step of a Campaign.
type CampaignWave struct {
	// size is how many members the wave takes: a number, or a percentage of
	// all members rounded down with a minimum of 1.
	Size intstr.IntOrString `json:"size"`
	// selector, when set, takes the wave's members only among the remaining
	// members whose labels it matches (for example canary racks first); the
	// wave is smaller when fewer match.
	// +optional
	Selector *metav1.LabelSelector `json:"selector,omitempty"`
	// bakeDuration is how long to wait after the wave finished before the next starts.
	// +optional
	BakeDuration *metav1.Duration `json:"bakeDuration,omitempty"`
	// requireApproval holds the wave until spec.approvedWaves reaches its number.
	// +optional
	RequireApproval bool `json:"requireApproval,omitempty"`
}

// CampaignMaxUnavailable caps unavailable members per scope. Each is a number
// or a percentage of that scope's members, rounded down with a minimum of 1.
type CampaignMaxUnavailable struct {
	// global caps unavailable members over the whole Campaign.
	// +optional
	Global *intstr.IntOrString `json:"global,omitempty"`
	// perDatacenter caps unavailable members in each datacenter.
	// +optional
	PerDatacenter *intstr.IntOrString `json:"perDatacenter,omitempty"`
	// perFailureDomain caps unavailable members in each failure domain
	// (see failureDomainLabel).
	// +optional
	PerFailureDomain *intstr.IntOrString `json:"perFailureDomain,omitempty"`
}

// CampaignFailureAction is what a Campaign does when a failure budget is exceeded.
type CampaignFailureAction string

const (
	// CampaignFailurePause stops starting Jobs in the budget's scope until an
	// operator raises the budget or resumes.
	CampaignFailurePause CampaignFailureAction = "Pause"
	// CampaignFailureCancel gives up the rest of the budget's scope: its
	// pending members are counted cancelled.
	CampaignFailureCancel CampaignFailureAction = "Cancel"
)

// CampaignInFlightPolicy is what happens to running Jobs when a budget trips.
type CampaignInFlightPolicy string

const (
	// CampaignInFlightFinish lets running Jobs finish.
	CampaignInFlightFinish CampaignInFlightPolicy = "Finish"
	// CampaignInFlightCancel cancels the scope's running Jobs.
	CampaignInFlightCancel CampaignInFlightPolicy = "Cancel"
)

// CampaignFailurePolicy bounds failures.
type CampaignFailurePolicy struct {
	// maxFailures are the failure budgets; a budget trips when failures
	// exceed it (0: the first failure trips it). Defaults to global: 5%
	// when none is set.
	// +optional
	MaxFailures CampaignFailureBudgets `json:"maxFailures,omitempty"`
	// action is Pause (default) or Cancel. A per-datacenter budget acts on
	// that datacenter only; the global and per-wave budgets on everything.
	// +optional
	Action CampaignFailureAction `json:"action,omitempty"`
	// inFlight is Finish (default: running Jobs finish) or Cancel.
	// +optional
	InFlight CampaignInFlightPolicy `json:"inFlight,omitempty"`
}

// CampaignFailureBudgets are failure budgets per scope. Each is a number or a
// percentage of that scope's members, rounded down (no minimum: 0% of any
// scope is 0, so its first failure trips it).
type CampaignFailureBudgets struct {
	// global bounds failures over the whole Campaign.
	// +optional
	Global *intstr.IntOrString `json:"global,omitempty"`
	// perDatacenter bounds failures in each datacenter; exceeding it acts on
	// that datacenter only.
	// +optional
	PerDatacenter *intstr.IntOrString `json:"perDatacenter,omitempty"`
	// perWave bounds failures in each wave.
	// +optional
	PerWave *intstr.IntOrString `json:"perWave,omitempty"`
}

// MaintenanceWindow is a recurring time when Jobs may start in the
// datacenters it selects.
type MaintenanceWindow struct {
	// datacenterSelector selects the Datacenters the window applies to; empty selects all.
	// +optional
	DatacenterSelector *metav1.LabelSelector `json:"datacenterSelector,omitempty"`
	// days the window opens on: Mon, Tue, Wed, Thu, Fri, Sat, Sun; empty is every day.
	// +optional
	// +listType=set
	Days []string `json:"days,omitempty"`
	// start is when the window opens, HH:MM in timeZone.
	Start string `json:"start"`
	// end is when it closes, HH:MM in timeZone; an end not after start closes
	// on the next day.
	End string `json:"end"`
	// timeZone is an IANA time zone name, e.g. Europe/Paris. Defaults to UTC.
	// +optional
	TimeZone string `json:"timeZone,omitempty"`
	// cutoff: no Job starts later than end minus cutoff, so that it can finish
	// inside the window.
	// +optional
	Cutoff *metav1.Duration `json:"cutoff,omitempty"`
}

// CampaignPhase is the coarse progress of a Campaign.
type CampaignPhase string

const (
	// CampaignPending: not started (not yet validated, or a Template missing).
	CampaignPending CampaignPhase = "Pending"
	// CampaignRunning: starting and following Jobs.
	CampaignRunning CampaignPhase = "Running"
	// CampaignPaused: no datacenter may start a Job now (manual pause, a
	// tripped budget, awaiting approval, outside every window).
	CampaignPaused CampaignPhase = "Paused"
	// CampaignComplete: every member finished and no budget was exceeded.
	CampaignComplete CampaignPhase = "Complete"
	// CampaignFailed: it ended with a failure budget exceeded.
	CampaignFailed CampaignPhase = "Failed"
	// CampaignCancelled: it ended through spec.cancel.
	CampaignCancelled CampaignPhase = "Cancelled"
)

// Campaign condition types and the reasons of CampaignConditionPaused.
const (
	CampaignConditionValidated   = "Validated"
	CampaignConditionProgressing = "Progressing"
	CampaignConditionPaused      = "Paused"
	CampaignConditionComplete    = "Complete"
	CampaignConditionFailed      = "Failed"

	CampaignReasonManualPause           = "ManualPause"
	CampaignReasonFailureBudgetExceeded = "FailureBudgetExceeded"
	CampaignReasonOutsideWindow         = "OutsideWindow"
	CampaignReasonAwaitingApproval      = "AwaitingApproval"
	CampaignReasonDatacenterPaused      = "DatacenterPaused"
	CampaignReasonBaking                = "Baking"
)

// CampaignLabel is set on every Job a Campaign creates, to the Campaign's
// name: `kubectl get jobs.stargate.io -A -l stargate.io/campaign=os-2`.
const CampaignLabel = "stargate.io/campaign"

// DatacenterNameLabel is set by the server on every Datacenter, to its name,
// so label selectors (a Campaign's datacenterSelector) can name Datacenters.
const DatacenterNameLabel = "stargate.io/datacenter"

// HardwareLabel is set on every Job made for a Hardware by /repave or a
// Campaign: `kubectl get jobs.stargate.io -l stargate.io/hardware=server-001`
// lists a server's history.
const HardwareLabel = "stargate.io/hardware"

// CampaignFinalizer holds a Campaign's Job until the Campaign counted how it
// ended, so no outcome is lost and no member is operated on twice.
const CampaignFinalizer = "stargate.io/campaign"

// CampaignCounts count a Campaign's members by where they are.
type CampaignCounts struct {
	// targets is the number of members.
	Targets int32 `json:"targets"`
	// skipped members needed no Job (already up to date).
	// +optional
	Skipped int32 `json:"skipped,omitempty"`
	// pending members have no Job yet.
	// +optional
	Pending int32 `json:"pending,omitempty"`
	// running members have an unfinished Job.
	// +optional
	Running int32 `json:"running,omitempty"`
	// succeeded members' Jobs succeeded.
	// +optional
	Succeeded int32 `json:"succeeded,omitempty"`
	// failed members' Jobs failed.
	// +optional
	Failed int32 `json:"failed,omitempty"`
	// cancelled members will not be operated on: their Job was cancelled, or
	// the Campaign or their datacenter's share was cancelled before it started.
	// +optional
	Cancelled int32 `json:"cancelled,omitempty"`
}

// CampaignDatacenterStatus is a Campaign's progress in one datacenter.
type CampaignDatacenterStatus struct {
	// name of the Datacenter (its namespace).
	Name string `json:"name"`
	// counts of this datacenter's members.
	Counts CampaignCounts `json:"counts"`
	// pausedReason says why no Job starts here now, if none does:
	// ManualPause, FailureBudgetExceeded, OutsideWindow, AwaitingApproval,
	// Baking or DatacenterPaused.
	// +optional
	PausedReason string `json:"pausedReason,omitempty"`
	// nextWindow is when this datacenter's next maintenance window opens,
	// while it is outside one.
	// +optional
	NextWindow *metav1.Time `json:"nextWindow,omitempty"`
}

// CampaignFailure is one failed member.
type CampaignFailure struct {
	// datacenter (namespace) of the Hardware.
	Datacenter string `json:"datacenter"`
	// hardware is the Hardware's name.
	Hardware string `json:"hardware"`
	// job is the Job that failed.
	Job string `json:"job"`
	// wave the member was in.
	Wave int32 `json:"wave"`
	// reason the Job gave.
	// +optional
	Reason string `json:"reason,omitempty"`
}

// CampaignWavePlan is one wave's members.
type CampaignWavePlan struct {
	// number of the wave, from 1.
	Number int32 `json:"number"`
	// members in the wave.
	Members int32 `json:"members"`
	// datacenters and their members in the wave.
	// +optional
	// +listType=map
	// +listMapKey=name
	Datacenters []CampaignDatacenterPlan `json:"datacenters,omitempty"`
	// firstMembers are the first few members as datacenter/name.
	// +optional
	// +listType=atomic
	FirstMembers []string `json:"firstMembers,omitempty"`
}

// CampaignDatacenterPlan is one datacenter's share of a wave.
type CampaignDatacenterPlan struct {
	// name of the Datacenter.
	Name string `json:"name"`
	// members of the wave in it.
	Members int32 `json:"members"`
}

// CampaignStatus is the progress of a Campaign. It holds counts and capped
// lists, never every member: the members are recorded by the controller.
type CampaignStatus struct {
	// phase is Pending, Running, Paused, Complete, Failed or Cancelled.
	// +optional
	Phase CampaignPhase `json:"phase,omitempty"`
	// observedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions: Validated, Progressing, Paused, Complete, Failed.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// startTime is when the members were fixed.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime is when the Campaign ended.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// currentWave is the wave under way (from 1); 0 before the first.
	// +optional
	CurrentWave int32 `json:"currentWave,omitempty"`
	// waves is the number of waves the members were planned into.
	// +optional
	Waves int32 `json:"waves,omitempty"`
	// waveStartTime is when the current wave started.
	// +optional
	WaveStartTime *metav1.Time `json:"waveStartTime,omitempty"`
	// waveFinishTime is when the current wave's last member finished; the
	// next wave starts after its bakeDuration.
	// +optional
	WaveFinishTime *metav1.Time `json:"waveFinishTime,omitempty"`
	// counts of all members.
	// +optional
	Counts CampaignCounts `json:"counts,omitempty"`
	// datacenters: counts and pause reason per datacenter.
	// +optional
	// +listType=map
	// +listMapKey=name
	Datacenters []CampaignDatacenterStatus `json:"datacenters,omitempty"`
	// plan is each wave's size, per datacenter, with its first members (the
	// first 50 waves). A server-side dry run of a create fills it, to show
	// what would be done.
	// +optional
	// +listType=atomic
	Plan []CampaignWavePlan `json:"plan,omitempty"`
	// failures lists failed members, the first 50.
	// +optional
	// +listType=atomic
	Failures []CampaignFailure `json:"failures,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// CampaignList is a list of Campaigns.
type CampaignList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Campaign `json:"items"`
}
