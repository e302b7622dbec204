package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
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
