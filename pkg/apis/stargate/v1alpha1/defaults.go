package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

const (
	// DefaultBackoffLimit is how many transient datacenter errors a Job retries by default.
	DefaultBackoffLimit int32 = 3
	// DefaultMaxConcurrentJobs is how many Jobs a Datacenter runs at once by default.
	DefaultMaxConcurrentJobs int32 = 10
)

func addDefaultingFuncs(scheme *runtime.Scheme) error {
	return RegisterDefaults(scheme)
}

// SetDefaults_JobSpec defaults the retry budget of a Job.
func SetDefaults_JobSpec(obj *JobSpec) {
	if obj.BackoffLimit == nil {
		obj.BackoffLimit = ptr.To(DefaultBackoffLimit)
	}
}

// SetDefaults_DatacenterSpec defaults a Datacenter's concurrency.
func SetDefaults_DatacenterSpec(obj *DatacenterSpec) {
	if obj.MaxConcurrentJobs == nil {
		obj.MaxConcurrentJobs = ptr.To(DefaultMaxConcurrentJobs)
	}
}

// Campaign defaults, written down once: a Campaign with no limits of its own
// makes at most 10% of its members unavailable and pauses when more than 5%
// of them failed.
var (
	DefaultCampaignMaxUnavailable = intstr.FromString("10%")
	DefaultCampaignMaxFailures    = intstr.FromString("5%")
	DefaultCampaignWaveSize       = intstr.FromString("100%")
)

// SetDefaults_CampaignSpec fills in a Campaign's safety limits and policy.
func SetDefaults_CampaignSpec(obj *CampaignSpec) {
	if obj.SkipUpToDate == nil && obj.Operation == OperationRepave {
		obj.SkipUpToDate = ptr.To(true)
	}
	if obj.JobTemplate.BackoffLimit == nil {
		obj.JobTemplate.BackoffLimit = ptr.To(DefaultBackoffLimit)
	}
	if len(obj.Waves) == 0 {
		obj.Waves = []CampaignWave{{Size: DefaultCampaignWaveSize}}
	}
	if u := &obj.MaxUnavailable; u.Global == nil && u.PerDatacenter == nil && u.PerFailureDomain == nil {
		u.Global = ptr.To(DefaultCampaignMaxUnavailable)
	}
	if f := &obj.FailurePolicy.MaxFailures; f.Global == nil && f.PerDatacenter == nil && f.PerWave == nil {
		f.Global = ptr.To(DefaultCampaignMaxFailures)
	}
	if obj.FailurePolicy.Action == "" {
		obj.FailurePolicy.Action = CampaignFailurePause
	}
	if obj.FailurePolicy.InFlight == "" {
		obj.FailurePolicy.InFlight = CampaignInFlightFinish
	}
}

// SetDefaults_MaintenanceWindow reads times in UTC unless told otherwise.
func SetDefaults_MaintenanceWindow(obj *MaintenanceWindow) {
	if obj.TimeZone == "" {
		obj.TimeZone = "UTC"
	}
}
