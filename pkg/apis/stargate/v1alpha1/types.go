package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// +genclient
// +genclient:method=Repave,verb=create,subresource=repave,input=stargate.io/stargate/pkg/apis/stargate/v1alpha1.RepaveRequest,result=stargate.io/stargate/pkg/apis/stargate/v1alpha1.RepaveRequest
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Hardware is one bare-metal server in a datacenter. Its namespace names the
// datacenter it lives in (for example dc-west).
type Hardware struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the server's inventory, as the operator registered it.
	Spec HardwareSpec `json:"spec"`
	// status is what Stargate last observed of the server. Written only through
	// the status subresource.
	// +optional
	Status HardwareStatus `json:"status,omitempty"`
}

// HardwareSpec is the inventory of a server.
type HardwareSpec struct {
	// mac is the MAC address of the provisioning interface. Any common form is
	// accepted (aa-bb-cc-dd-ee-01, AABB.CCDD.EE01); it is stored in lower-case
	// colon form (aa:bb:cc:dd:ee:01). Unique across all datacenters.
	MAC string `json:"mac"`
	// ipv4 is the server's unicast IPv4 address. Unique within its datacenter.
	IPv4 string `json:"ipv4"`
	// inventory describes the server's model and where it sits.
	// +optional
	Inventory HardwareInventory `json:"inventory,omitempty"`
	// bmc is how to reach the server's baseboard management controller.
	// +optional
	BMC *BMC `json:"bmc,omitempty"`
}

// HardwareInventory is the descriptive inventory of a server.
type HardwareInventory struct {
	// sku is the hardware model, e.g. GPU-8xH100.
	// +optional
	SKU string `json:"sku,omitempty"`
	// location is free rack/slot text, e.g. rack-5-slot-12.
	// +optional
	Location string `json:"location,omitempty"`
}

// BMC is the address of a baseboard management controller.
type BMC struct {
	// address is the host name or IP address (optionally with port) of the BMC.
	Address string `json:"address"`
}

// HardwareState is the lifecycle state of a server as Stargate last saw it.
type HardwareState string

const (
	HardwareStateReady        HardwareState = "ready"
	HardwareStateProvisioning HardwareState = "provisioning"
	HardwareStateRebooting    HardwareState = "rebooting"
	HardwareStateOff          HardwareState = "off"
	HardwareStateError        HardwareState = "error"
	HardwareStateUnknown      HardwareState = "unknown"
)

// HardwareStatus is the observed state of a server.
type HardwareStatus struct {
	// state is one of ready, provisioning, rebooting, off, error or unknown;
	// empty until Stargate has looked the server up at its datacenter.
	// +optional
	State HardwareState `json:"state,omitempty"`
	// currentOS is the OS version the datacenter reports as installed.
	// +optional
	CurrentOS string `json:"currentOS,omitempty"`
	// activeJob is the name of the unfinished Job that holds this server, if any.
	// +optional
	ActiveJob string `json:"activeJob,omitempty"`
	// lastJob is the name of the most recent finished Job on this server.
	// +optional
	LastJob string `json:"lastJob,omitempty"`
	// lastJobResult is how the most recent finished Job on this server ended,
	// kept here so the result outlives the Job (finished Jobs are deleted after
	// their TTL, or --finished-job-ttl).
	// +optional
	LastJobResult *JobResult `json:"lastJobResult,omitempty"`
	// observedGeneration is the spec generation the status reflects.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// conditions are the latest observations of the server's state.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// JobResult is how a Job ended.
type JobResult struct {
	// name of the Job.
	Name string `json:"name"`
	// operation the Job carried out.
	Operation Operation `json:"operation"`
	// phase it ended in: Succeeded or Failed.
	Phase JobPhase `json:"phase"`
	// reason it ended so.
	// +optional
	Reason string `json:"reason,omitempty"`
	// completionTime is when it ended.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// HardwareList is a list of Hardware.
type HardwareList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Hardware `json:"items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Template says what to install on a server by a repave: the OS image and the
// cloud-init that joins it to its cluster.
type Template struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the provisioning configuration.
	Spec TemplateSpec `json:"spec"`
}

// TemplateSpec is the provisioning configuration of a Template.
type TemplateSpec struct {
	// osVersion is the version the server reports once this image is installed, e.g. 2.0.0.
	OSVersion string `json:"osVersion"`
	// osImage is the https:// URL of the OS image. http:// is accepted with a warning.
	OSImage string `json:"osImage"`
	// checksum is the image's digest as sha256:<64 lower-case hex digits>.
	// +optional
	Checksum string `json:"checksum,omitempty"`
	// cloudInit is passed to the server on first boot.
	// +optional
	CloudInit *CloudInit `json:"cloudInit,omitempty"`
}

// CloudInit is the first-boot configuration of a server.
type CloudInit struct {
	// userData is the cloud-init user data. It may hold cluster join tokens:
	// enable encryption at rest for templates when it does.
	// +optional
	UserData string `json:"userData,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// TemplateList is a list of Templates.
type TemplateList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Template `json:"items"`
}

// +genclient
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Job is one operation on one Hardware (repave, reboot, power-off or
// power-on), carried out by the Hardware's datacenter.
type Job struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is the requested operation. Immutable after creation, except cancel.
	Spec JobSpec `json:"spec"`
	// status is the progress of the operation. Written only through the status subresource.
	// +optional
	Status JobStatus `json:"status,omitempty"`
}

// Operation is what a Job does to a server.
type Operation string

const (
	OperationRepave   Operation = "repave"
	OperationReboot   Operation = "reboot"
	OperationPowerOff Operation = "power-off"
	OperationPowerOn  Operation = "power-on"
)

// LocalObjectReference names an object in the same namespace.
type LocalObjectReference struct {
	// name of the referent.
	Name string `json:"name"`
}

// JobSpec is the requested operation.
type JobSpec struct {
	// hardwareRef names the Hardware, in the Job's namespace, to operate on.
	HardwareRef LocalObjectReference `json:"hardwareRef"`
	// operation is one of repave, reboot, power-off or power-on.
	Operation Operation `json:"operation"`
	// templateRef names the Template to install. Required for repave, forbidden otherwise.
	// +optional
	TemplateRef *LocalObjectReference `json:"templateRef,omitempty"`
	// backoffLimit is how many times transient datacenter errors are retried
	// before the Job fails. Defaults to 3.
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// activeDeadlineSeconds bounds how long the Job may run once started; past
	// it the Job fails and is cancelled at the datacenter.
	// +optional
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	// ttlSecondsAfterFinished deletes the Job this many seconds after it finished.
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
	// cancel, once set to true, cancels the Job at the datacenter. It cannot be unset.
	// +optional
	Cancel bool `json:"cancel,omitempty"`
}

// JobPhase is the coarse progress of a Job.
type JobPhase string

const (
	JobPending   JobPhase = "Pending"
	JobRunning   JobPhase = "Running"
	JobSucceeded JobPhase = "Succeeded"
	JobFailed    JobPhase = "Failed"
)

// JobCancelFinalizer is on every Job the controller has sent (or is about to
// send) to its datacenter: deleting such a Job before it finished first
// cancels it there. The status write that ends a Job removes it.
const JobCancelFinalizer = "stargate.io/cancel-at-datacenter"

// JobAbandonLabel, set to "true" on an unfinished Job, makes Stargate end it
// (Failed, Abandoned) without asking its datacenter what runs under its key:
// the way out, audited, when that datacenter is gone for good. Its Hardware
// is then free although the machine may still be operated on.
const JobAbandonLabel = "stargate.io/abandon"

// JobReasonAbandoned is the reason of a Job ended through JobAbandonLabel.
const JobReasonAbandoned = "Abandoned"

// The reasons of a Job that failed because it was stopped, not because its
// operation failed: spec.cancel, or a delete, reached it before it
// finished. A Job that failed first and was deleted after keeps the
// reason of its failure.
const (
	JobReasonCancelled = "Cancelled"
	JobReasonDeleted   = "Deleted"
)

// HardwareConditionReserved is True on a Hardware while a Job holds it
// (status.activeJob); its lastTransitionTime is when the Job took it.
const HardwareConditionReserved = "Reserved"

// HardwareConditionFailed is True on a Hardware whose last Job failed at its
// datacenter (state error) or was abandoned there (state unknown).
const HardwareConditionFailed = "Failed"

// ResolvedTemplate is the part of a Template a Job used, copied when it started.
type ResolvedTemplate struct {
	// osVersion of the Template when the Job started.
	OSVersion string `json:"osVersion"`
	// osImage of the Template when the Job started.
	OSImage string `json:"osImage"`
}

// JobSubmission is the request the controller sends to the datacenter for a
// Job, fixed before the first attempt: every attempt, including those after a
// crash or a lost answer, sends the same request under the Job's UID as
// idempotency key, so the datacenter never sees two bodies under one key.
type JobSubmission struct {
	// mac of the Hardware when the request was fixed.
	MAC string `json:"mac"`
	// ipv4 of the Hardware when the request was fixed.
	// +optional
	IPv4 string `json:"ipv4,omitempty"`
	// userDataSHA256 is the hex SHA-256 of the Template's cloud-init user data
	// sent with a repave. The data itself may hold secrets and is never stored
	// here; a later attempt sends the Template's user data only if it still
	// has this digest.
	// +optional
	UserDataSHA256 string `json:"userDataSHA256,omitempty"`
}

// JobStatus is the progress of a Job.
type JobStatus struct {
	// phase is Pending, Running, Succeeded or Failed.
	// +optional
	Phase JobPhase `json:"phase,omitempty"`
	// dcJobID is the datacenter's ID for the operation, once submitted.
	// +optional
	DCJobID string `json:"dcJobID,omitempty"`
	// reason is a CamelCase word saying why the Job is in its phase.
	// +optional
	Reason string `json:"reason,omitempty"`
	// message is a human-readable account of the phase.
	// +optional
	Message string `json:"message,omitempty"`
	// startTime is when the operation was submitted to the datacenter.
	// +optional
	StartTime *metav1.Time `json:"startTime,omitempty"`
	// completionTime is when the Job reached Succeeded or Failed.
	// +optional
	CompletionTime *metav1.Time `json:"completionTime,omitempty"`
	// attempts counts submissions to the datacenter, including retries.
	// +optional
	Attempts int32 `json:"attempts,omitempty"`
	// template is the Template as resolved when the Job started.
	// +optional
	Template *ResolvedTemplate `json:"template,omitempty"`
	// lastAttemptTime is when the latest submit was sent, written before it is
	// sent. Each submit carries the deadline lastAttemptTime + the submit window
	// (header Not-After), after which a datacenter must not start it; so only
	// past that deadline is a datacenter's "nothing under this key" final.
	// +optional
	LastAttemptTime *metav1.Time `json:"lastAttemptTime,omitempty"`
	// currentOS is the OS its datacenter reported on the machine when the Job
	// succeeded; the server copies it to the Hardware's status.currentOS.
	// +optional
	CurrentOS string `json:"currentOS,omitempty"`
	// submission is the request sent (or about to be sent) to the datacenter.
	// Once it is set, a submit may have reached the datacenter: the Job holds
	// its Hardware and a slot of its datacenter, and ends only after the
	// datacenter has said what runs under its idempotency key.
	// +optional
	Submission *JobSubmission `json:"submission,omitempty"`
	// conditions are Progressing, Complete and Failed.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// JobList is a list of Jobs.
type JobList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Job `json:"items"`
}

// +genclient
// +genclient:nonNamespaced
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// Datacenter says how to reach one datacenter's API. The Datacenter named
// dc-west governs the objects in namespace dc-west. Its bearer token is never
// an API field: Stargate reads it from the file of the same name in
// --datacenter-credentials-dir.
type Datacenter struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is how to reach and use the datacenter.
	Spec DatacenterSpec `json:"spec"`
	// status is the datacenter's observed health and load.
	// +optional
	Status DatacenterStatus `json:"status,omitempty"`
}

// DatacenterSpec is how to reach and use a datacenter.
type DatacenterSpec struct {
	// endpoint is the http(s):// base URL of the datacenter API.
	Endpoint string `json:"endpoint"`
	// maxConcurrentJobs caps the Jobs running at once in this datacenter. Defaults to 10.
	// +optional
	MaxConcurrentJobs *int32 `json:"maxConcurrentJobs,omitempty"`
	// paused, when true, starts no new Jobs here; running Jobs go on. A maintenance switch.
	// +optional
	Paused bool `json:"paused,omitempty"`
}

// DatacenterStatus is the observed health and load of a datacenter.
type DatacenterStatus struct {
	// conditions include Ready: whether the datacenter API answered its last probe.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// activeJobs is the number of Jobs running in this datacenter.
	// +optional
	ActiveJobs int32 `json:"activeJobs,omitempty"`
	// lastProbeTime is when a probe last wrote this status. Probes run every
	// probe interval (10s by default), but write only when Ready or activeJobs
	// changes, or when lastProbeTime is 5 minutes old; one much older than
	// that means probes have stopped.
	// +optional
	LastProbeTime *metav1.Time `json:"lastProbeTime,omitempty"`
	// drivenBy names the Stargate replica whose controllers drive this
	// datacenter (submit, follow and cancel its Jobs, probe it, look its
	// Hardware up); replicas share the datacenters, one each at a time.
	// +optional
	DrivenBy string `json:"drivenBy,omitempty"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// DatacenterList is a list of Datacenters.
type DatacenterList struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []Datacenter `json:"items"`
}

// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object

// RepaveRequest is the body of POST .../hardwares/NAME/repave: it creates the
// repave Job of that Hardware. The answer is the RepaveRequest again, its spec
// as sent (defaults applied) and its status naming the Job made, the way
// TokenRequest and Scale answer.
type RepaveRequest struct {
	metav1.TypeMeta `json:",inline"`
	// +optional
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// spec is what the repave Job will do.
	Spec RepaveRequestSpec `json:"spec"`
	// status names the Job the request made. Set only in the answer.
	// +optional
	Status RepaveRequestStatus `json:"status,omitempty"`
}

// RepaveRequestStatus is what a RepaveRequest made.
type RepaveRequestStatus struct {
	// job is the repave Job created (or, on a dry run, that would be created).
	// +optional
	Job *JobReference `json:"job,omitempty"`
}

// JobReference names a Job in the Hardware's namespace.
type JobReference struct {
	// name of the Job.
	Name string `json:"name"`
	// uid of the Job; empty on a dry run.
	// +optional
	UID types.UID `json:"uid,omitempty"`
}

// RepaveRequestSpec is the part of a repave Job a caller chooses.
type RepaveRequestSpec struct {
	// templateRef names the Template to install, in the Hardware's namespace.
	TemplateRef LocalObjectReference `json:"templateRef"`
	// backoffLimit passes to the Job's spec.backoffLimit. Defaults to 3.
	// +optional
	BackoffLimit *int32 `json:"backoffLimit,omitempty"`
	// activeDeadlineSeconds passes to the Job's spec.activeDeadlineSeconds.
	// +optional
	ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	// ttlSecondsAfterFinished passes to the Job's spec.ttlSecondsAfterFinished.
	// +optional
	TTLSecondsAfterFinished *int32 `json:"ttlSecondsAfterFinished,omitempty"`
}

// Occupies reports whether a Job holds a slot of its datacenter's
// maxConcurrentJobs: it is Running, or Pending with its request fixed
// (status.submission), so a submit may have started it there. The field
// selector status.occupying=true selects these.
func (j *Job) Occupies() bool {
	switch j.Status.Phase {
	case JobRunning:
		return true
	case JobPending, "":
		return j.Status.Submission != nil || j.Status.DCJobID != ""
	}
	return false
}
