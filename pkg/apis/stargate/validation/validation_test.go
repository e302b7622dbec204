package validation

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
)

// matcher compares errors by type and field path: the contract clients rely on.
var matcher = field.ErrorMatcher{}.ByType().ByField()

func validHardware() *stargate.Hardware {
	return &stargate.Hardware{
		ObjectMeta: metav1.ObjectMeta{Name: "server-001", Namespace: "dc-west", ResourceVersion: "1"},
		Spec: stargate.HardwareSpec{
			MAC:       "aa:bb:cc:dd:ee:01",
			IPv4:      "10.0.1.5",
			Inventory: stargate.HardwareInventory{SKU: "GPU-8xH100", Location: "rack-5-slot-12"},
		},
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"aa:bb:cc:dd:ee:01":  "aa:bb:cc:dd:ee:01",
		"AA:BB:CC:DD:EE:01":  "aa:bb:cc:dd:ee:01",
		"aa-bb-cc-dd-ee-01":  "aa:bb:cc:dd:ee:01",
		"aabb.ccdd.ee01":     "aa:bb:cc:dd:ee:01",
		" AA-BB-CC-DD-EE-01": "aa:bb:cc:dd:ee:01",
	} {
		if got, ok := NormalizeMAC(in); !ok || got != want {
			t.Errorf("NormalizeMAC(%q) = %q, %v; want %q, true", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "aa:bb:cc:dd:ee", "zz:bb:cc:dd:ee:01", "00:00:00:00:fe:80:00:00"} {
		if _, ok := NormalizeMAC(bad); ok {
			t.Errorf("NormalizeMAC(%q) accepted a non-EUI-48 address", bad)
		}
	}
}

func TestValidateHardware(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*stargate.Hardware)
		want   field.ErrorList
	}{
		{"valid", func(*stargate.Hardware) {}, nil},
		{"valid with bmc host:port", func(h *stargate.Hardware) { h.Spec.BMC = &stargate.BMC{Address: "10.0.100.5:623"} }, nil},
		{"valid with bmc dns name", func(h *stargate.Hardware) { h.Spec.BMC = &stargate.BMC{Address: "bmc-001.dc-west.example"} }, nil},
		{"missing namespace", func(h *stargate.Hardware) { h.Namespace = "" },
			field.ErrorList{field.Required(field.NewPath("metadata", "namespace"), "")}},
		{"bad name", func(h *stargate.Hardware) { h.Name = "Server_001" },
			field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), nil, "")}},
		{"missing mac", func(h *stargate.Hardware) { h.Spec.MAC = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "mac"), "")}},
		{"garbage mac", func(h *stargate.Hardware) { h.Spec.MAC = "not-a-mac" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "mac"), nil, "")}},
		{"upper-case mac not normalised", func(h *stargate.Hardware) { h.Spec.MAC = "AA:BB:CC:DD:EE:01" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "mac"), nil, "")}},
		{"missing ipv4", func(h *stargate.Hardware) { h.Spec.IPv4 = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "ipv4"), "")}},
		{"ipv6 is not ipv4", func(h *stargate.Hardware) { h.Spec.IPv4 = "fd00::1" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "ipv4"), nil, "")}},
		{"leading zeros", func(h *stargate.Hardware) { h.Spec.IPv4 = "010.0.1.5" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "ipv4"), nil, "")}},
		{"unspecified", func(h *stargate.Hardware) { h.Spec.IPv4 = "0.0.0.0" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "ipv4"), nil, "")}},
		{"multicast", func(h *stargate.Hardware) { h.Spec.IPv4 = "224.0.0.1" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "ipv4"), nil, "")}},
		{"broadcast", func(h *stargate.Hardware) { h.Spec.IPv4 = "255.255.255.255" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "ipv4"), nil, "")}},
		{"sku too long", func(h *stargate.Hardware) { h.Spec.Inventory.SKU = strings.Repeat("x", 300) },
			field.ErrorList{field.TooLong(field.NewPath("spec", "inventory", "sku"), "", 256)}},
		{"location too long", func(h *stargate.Hardware) { h.Spec.Inventory.Location = strings.Repeat("x", 300) },
			field.ErrorList{field.TooLong(field.NewPath("spec", "inventory", "location"), "", 256)}},
		{"bmc without address", func(h *stargate.Hardware) { h.Spec.BMC = &stargate.BMC{} },
			field.ErrorList{field.Required(field.NewPath("spec", "bmc", "address"), "")}},
		{"bmc with bad port", func(h *stargate.Hardware) { h.Spec.BMC = &stargate.BMC{Address: "10.0.0.1:99999"} },
			field.ErrorList{field.Invalid(field.NewPath("spec", "bmc", "address"), nil, "")}},
		{"bmc with bad host", func(h *stargate.Hardware) { h.Spec.BMC = &stargate.BMC{Address: "bad host!"} },
			field.ErrorList{field.Invalid(field.NewPath("spec", "bmc", "address"), nil, "")}},
		{"several errors at once", func(h *stargate.Hardware) { h.Spec.MAC, h.Spec.IPv4 = "x", "y" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "mac"), nil, ""), field.Invalid(field.NewPath("spec", "ipv4"), nil, "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hw := validHardware()
			tc.mutate(hw)
			matcher.Test(t, tc.want, ValidateHardware(hw))
		})
	}
}

func TestValidateHardwareUpdate(t *testing.T) {
	old := validHardware()
	hw := validHardware()
	hw.Spec.IPv4 = "10.0.1.99"
	matcher.Test(t, nil, ValidateHardwareUpdate(hw, old))

	hw = validHardware()
	hw.Spec.IPv4 = "999.0.0.1"
	matcher.Test(t, field.ErrorList{field.Invalid(field.NewPath("spec", "ipv4"), nil, "")}, ValidateHardwareUpdate(hw, old))

	hw = validHardware()
	hw.Namespace = "dc-east"
	matcher.Test(t, field.ErrorList{field.Invalid(field.NewPath("metadata", "namespace"), nil, "")}, ValidateHardwareUpdate(hw, old))

	// Held by a Job: its machine's addresses stay as the Job fixed them.
	old.Status.ActiveJob = "repave-1"
	hw = validHardware()
	hw.Status.ActiveJob = "repave-1"
	hw.Spec.MAC, hw.Spec.IPv4 = "aa:bb:cc:dd:ee:99", "10.0.1.99"
	matcher.Test(t, field.ErrorList{field.Forbidden(field.NewPath("spec", "mac"), ""), field.Forbidden(field.NewPath("spec", "ipv4"), "")},
		ValidateHardwareUpdate(hw, old))
	hw = validHardware()
	hw.Spec.Inventory.SKU = "other"
	matcher.Test(t, nil, ValidateHardwareUpdate(hw, old))
}

func TestValidateHardwareStatusUpdate(t *testing.T) {
	cond := metav1.Condition{Type: "Ready", Status: metav1.ConditionTrue, Reason: "Probed", LastTransitionTime: metav1.Now()}
	tests := []struct {
		name   string
		status stargate.HardwareStatus
		want   field.ErrorList
	}{
		{"empty", stargate.HardwareStatus{}, nil},
		{"full", stargate.HardwareStatus{State: stargate.HardwareStateReady, CurrentOS: "2.0.0", ActiveJob: "repave-1",
			LastJob: "repave-0", ObservedGeneration: 3, Conditions: []metav1.Condition{cond}}, nil},
		{"unknown state", stargate.HardwareStatus{State: "melted"},
			field.ErrorList{field.NotSupported[string](field.NewPath("status", "state"), "melted", nil)}},
		{"bad active job name", stargate.HardwareStatus{ActiveJob: "Not A Name"},
			field.ErrorList{field.Invalid(field.NewPath("status", "activeJob"), nil, "")}},
		{"negative generation", stargate.HardwareStatus{ObservedGeneration: -1},
			field.ErrorList{field.Invalid(field.NewPath("status", "observedGeneration"), nil, "")}},
		{"condition without reason", stargate.HardwareStatus{Conditions: []metav1.Condition{{Type: "Ready", Status: "True", LastTransitionTime: metav1.Now()}}},
			field.ErrorList{field.Required(field.NewPath("status", "conditions").Index(0).Child("reason"), "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := validHardware()
			hw := validHardware()
			hw.Status = tc.status
			matcher.Test(t, tc.want, ValidateHardwareStatusUpdate(hw, old))
		})
	}
}

func validTemplate() *stargate.Template {
	return &stargate.Template{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-0-0", Namespace: "dc-west", ResourceVersion: "1"},
		Spec:       stargate.TemplateSpec{OSVersion: "2.0.0", OSImage: "https://images.example.com/ubuntu-22-aks-2.0.0.img"},
	}
}

func TestValidateTemplate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*stargate.Template)
		want   field.ErrorList
	}{
		{"valid", func(*stargate.Template) {}, nil},
		{"valid with checksum and user data", func(tm *stargate.Template) {
			tm.Spec.Checksum = "sha256:" + strings.Repeat("ab", 32)
			tm.Spec.CloudInit = &stargate.CloudInit{UserData: "#cloud-config\n"}
		}, nil},
		{"http is allowed (with a warning)", func(tm *stargate.Template) { tm.Spec.OSImage = "http://mirror.local/img" }, nil},
		{"missing osVersion", func(tm *stargate.Template) { tm.Spec.OSVersion = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "osVersion"), "")}},
		{"osVersion with spaces", func(tm *stargate.Template) { tm.Spec.OSVersion = "2.0 beta" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "osVersion"), nil, "")}},
		{"missing osImage", func(tm *stargate.Template) { tm.Spec.OSImage = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "osImage"), "")}},
		{"ftp image", func(tm *stargate.Template) { tm.Spec.OSImage = "ftp://images.example.com/x.img" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "osImage"), nil, "")}},
		{"relative image", func(tm *stargate.Template) { tm.Spec.OSImage = "/images/x.img" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "osImage"), nil, "")}},
		{"image with credentials", func(tm *stargate.Template) { tm.Spec.OSImage = "https://user:pw@images.example.com/x.img" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "osImage"), nil, "")}},
		{"md5 checksum", func(tm *stargate.Template) { tm.Spec.Checksum = "md5:" + strings.Repeat("a", 32) },
			field.ErrorList{field.Invalid(field.NewPath("spec", "checksum"), nil, "")}},
		{"short sha256", func(tm *stargate.Template) { tm.Spec.Checksum = "sha256:abc" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "checksum"), nil, "")}},
		{"upper-case sha256", func(tm *stargate.Template) { tm.Spec.Checksum = "sha256:" + strings.Repeat("AB", 32) },
			field.ErrorList{field.Invalid(field.NewPath("spec", "checksum"), nil, "")}},
		{"user data too large", func(tm *stargate.Template) {
			tm.Spec.CloudInit = &stargate.CloudInit{UserData: strings.Repeat("x", MaxUserDataBytes+1)}
		}, field.ErrorList{field.TooLong(field.NewPath("spec", "cloudInit", "userData"), "", MaxUserDataBytes)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tm := validTemplate()
			tc.mutate(tm)
			matcher.Test(t, tc.want, ValidateTemplate(tm))
			matcher.Test(t, tc.want, ValidateTemplateUpdate(tm, validTemplate()))
		})
	}
}

func TestTooLongUserDataIsNotEchoed(t *testing.T) {
	tm := validTemplate()
	secret := "join-token-" + strings.Repeat("s", MaxUserDataBytes)
	tm.Spec.CloudInit = &stargate.CloudInit{UserData: secret}
	for _, err := range ValidateTemplate(tm) {
		if strings.Contains(err.Error(), "join-token-") {
			t.Fatalf("the error repeats the user data, which may hold secrets: %.200s", err.Error())
		}
	}
}

func TestWarnings(t *testing.T) {
	p := field.NewPath("spec", "x")
	if InsecureImageWarning(p, "https://a/b") != "" || InsecureImageWarning(p, "http://a/b") == "" {
		t.Error("images: want a warning for http only")
	}
	for _, loopback := range []string{"http://127.0.0.1:8080", "http://localhost:8081", "https://dc.example"} {
		if w := InsecureEndpointWarning(p, loopback); w != "" {
			t.Errorf("%s: unexpected warning %q", loopback, w)
		}
	}
	if InsecureEndpointWarning(p, "http://dc-west.example:8080") == "" {
		t.Error("want a warning for a plain-http remote datacenter")
	}
}

func validJob() *stargate.Job {
	return &stargate.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "repave-server-001", Namespace: "dc-west", ResourceVersion: "1"},
		Spec: stargate.JobSpec{
			HardwareRef:  stargate.LocalObjectReference{Name: "server-001"},
			TemplateRef:  &stargate.LocalObjectReference{Name: "os-2-0-0"},
			Operation:    stargate.OperationRepave,
			BackoffLimit: ptr.To[int32](3),
		},
	}
}

func TestValidateJob(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*stargate.Job)
		want   field.ErrorList
	}{
		{"valid repave", func(*stargate.Job) {}, nil},
		{"valid reboot", func(j *stargate.Job) { j.Spec.Operation, j.Spec.TemplateRef = stargate.OperationReboot, nil }, nil},
		{"valid power-off", func(j *stargate.Job) { j.Spec.Operation, j.Spec.TemplateRef = stargate.OperationPowerOff, nil }, nil},
		{"valid power-on with limits", func(j *stargate.Job) {
			j.Spec.Operation, j.Spec.TemplateRef = stargate.OperationPowerOn, nil
			j.Spec.ActiveDeadlineSeconds, j.Spec.TTLSecondsAfterFinished = ptr.To[int64](600), ptr.To[int32](0)
		}, nil},
		{"missing hardware", func(j *stargate.Job) { j.Spec.HardwareRef.Name = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "hardwareRef", "name"), "")}},
		{"bad hardware name", func(j *stargate.Job) { j.Spec.HardwareRef.Name = "../etc" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "hardwareRef", "name"), nil, "")}},
		{"missing operation", func(j *stargate.Job) { j.Spec.Operation, j.Spec.TemplateRef = "", nil },
			field.ErrorList{field.Required(field.NewPath("spec", "operation"), "")}},
		{"unknown operation", func(j *stargate.Job) { j.Spec.Operation, j.Spec.TemplateRef = "explode", nil },
			field.ErrorList{field.NotSupported[string](field.NewPath("spec", "operation"), "explode", nil)}},
		{"repave without template", func(j *stargate.Job) { j.Spec.TemplateRef = nil },
			field.ErrorList{field.Required(field.NewPath("spec", "templateRef", "name"), "")}},
		{"repave with empty template name", func(j *stargate.Job) { j.Spec.TemplateRef.Name = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "templateRef", "name"), "")}},
		{"reboot with template", func(j *stargate.Job) { j.Spec.Operation = stargate.OperationReboot },
			field.ErrorList{field.Forbidden(field.NewPath("spec", "templateRef"), "")}},
		{"negative backoff", func(j *stargate.Job) { j.Spec.BackoffLimit = ptr.To[int32](-1) },
			field.ErrorList{field.Invalid(field.NewPath("spec", "backoffLimit"), nil, "")}},
		{"huge backoff", func(j *stargate.Job) { j.Spec.BackoffLimit = ptr.To[int32](1000) },
			field.ErrorList{field.Invalid(field.NewPath("spec", "backoffLimit"), nil, "")}},
		{"zero deadline", func(j *stargate.Job) { j.Spec.ActiveDeadlineSeconds = ptr.To[int64](0) },
			field.ErrorList{field.Invalid(field.NewPath("spec", "activeDeadlineSeconds"), nil, "")}},
		{"negative ttl", func(j *stargate.Job) { j.Spec.TTLSecondsAfterFinished = ptr.To[int32](-5) },
			field.ErrorList{field.Invalid(field.NewPath("spec", "ttlSecondsAfterFinished"), nil, "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			j := validJob()
			tc.mutate(j)
			matcher.Test(t, tc.want, ValidateJob(j))
		})
	}
}

func TestValidateJobUpdate(t *testing.T) {
	tests := []struct {
		name   string
		old    func(*stargate.Job)
		mutate func(*stargate.Job)
		want   field.ErrorList
	}{
		{"no change", func(*stargate.Job) {}, func(*stargate.Job) {}, nil},
		{"labels may change", func(*stargate.Job) {}, func(j *stargate.Job) { j.Labels = map[string]string{"a": "b"} }, nil},
		{"cancel", func(*stargate.Job) {}, func(j *stargate.Job) { j.Spec.Cancel = true }, nil},
		{"un-cancel", func(j *stargate.Job) { j.Spec.Cancel = true }, func(j *stargate.Job) { j.Spec.Cancel = false },
			field.ErrorList{field.Forbidden(field.NewPath("spec", "cancel"), "")}},
		{"change hardware", func(*stargate.Job) {}, func(j *stargate.Job) { j.Spec.HardwareRef.Name = "server-002" },
			field.ErrorList{field.Invalid(field.NewPath("spec"), nil, "")}},
		{"change template", func(*stargate.Job) {}, func(j *stargate.Job) { j.Spec.TemplateRef.Name = "os-3" },
			field.ErrorList{field.Invalid(field.NewPath("spec"), nil, "")}},
		{"change backoff", func(*stargate.Job) {}, func(j *stargate.Job) { j.Spec.BackoffLimit = ptr.To[int32](9) },
			field.ErrorList{field.Invalid(field.NewPath("spec"), nil, "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := validJob()
			tc.old(old)
			j := old.DeepCopy()
			tc.mutate(j)
			errs := ValidateJobUpdate(j, old)
			matcher.Test(t, tc.want, errs)
			for _, e := range errs {
				if e.Field == "spec" && !strings.Contains(e.Detail, "cancel") {
					t.Errorf("immutability error should tell the operator what to do: %q", e.Detail)
				}
			}
		})
	}
}

func TestValidateJobStatusUpdate(t *testing.T) {
	sub := &stargate.JobSubmission{MAC: "aa:bb:cc:dd:ee:01", IPv4: "10.0.1.5"}
	start := metav1.NewTime(time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC))
	before := metav1.NewTime(start.Add(-time.Minute))
	tests := []struct {
		name     string
		oldPhase stargate.JobPhase
		status   stargate.JobStatus
		want     field.ErrorList
	}{
		{"pending to running", stargate.JobPending, stargate.JobStatus{Phase: stargate.JobRunning, DCJobID: "job-1", StartTime: &start, Attempts: 1}, nil},
		{"running to succeeded", stargate.JobRunning, stargate.JobStatus{Phase: stargate.JobSucceeded}, nil},
		{"running to failed", stargate.JobRunning, stargate.JobStatus{Phase: stargate.JobFailed, Reason: "BackoffLimitExceeded"}, nil},
		{"succeeded stays", stargate.JobSucceeded, stargate.JobStatus{Phase: stargate.JobSucceeded, Message: "done"}, nil},
		{"unknown phase", stargate.JobPending, stargate.JobStatus{Phase: "Exploded"},
			field.ErrorList{field.NotSupported[string](field.NewPath("status", "phase"), "Exploded", nil)}},
		{"succeeded back to running", stargate.JobSucceeded, stargate.JobStatus{Phase: stargate.JobRunning},
			field.ErrorList{field.Forbidden(field.NewPath("status", "phase"), "")}},
		{"failed to succeeded", stargate.JobFailed, stargate.JobStatus{Phase: stargate.JobSucceeded},
			field.ErrorList{field.Forbidden(field.NewPath("status", "phase"), "")}},
		{"negative attempts", stargate.JobPending, stargate.JobStatus{Phase: stargate.JobPending, Attempts: -1},
			field.ErrorList{field.Invalid(field.NewPath("status", "attempts"), nil, "")}},
		{"completion before start", stargate.JobRunning, stargate.JobStatus{Phase: stargate.JobFailed, StartTime: &start, CompletionTime: &before},
			field.ErrorList{field.Invalid(field.NewPath("status", "completionTime"), nil, "")}},
		{"message too long", stargate.JobRunning, stargate.JobStatus{Phase: stargate.JobRunning, Message: strings.Repeat("m", 40000)},
			field.ErrorList{field.TooLong(field.NewPath("status", "message"), "", 0)}},
		{"running back to pending", stargate.JobRunning, stargate.JobStatus{Phase: stargate.JobPending, Submission: sub, DCJobID: "job-1"},
			field.ErrorList{field.Forbidden(field.NewPath("status", "phase"), "")}},
		{"submission changed", stargate.JobPending, stargate.JobStatus{Phase: stargate.JobPending,
			Submission: &stargate.JobSubmission{MAC: "aa:bb:cc:dd:ee:02"}},
			field.ErrorList{field.Forbidden(field.NewPath("status", "submission"), "").WithOrigin("immutable")}},
		{"submission given back (nothing ran)", stargate.JobPending, stargate.JobStatus{Phase: stargate.JobPending}, nil},
		{"submission dropped while running", stargate.JobRunning, stargate.JobStatus{Phase: stargate.JobRunning, DCJobID: "job-1"},
			field.ErrorList{field.Forbidden(field.NewPath("status", "submission"), "").WithOrigin("immutable")}},
		{"another datacenter job", stargate.JobRunning, stargate.JobStatus{Phase: stargate.JobRunning, Submission: sub, DCJobID: "job-2"},
			field.ErrorList{field.Forbidden(field.NewPath("status", "dcJobID"), "").WithOrigin("immutable")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := validJob()
			old.Status.Phase = tc.oldPhase
			if tc.name == "running back to pending" || strings.HasPrefix(tc.name, "submission") || tc.name == "another datacenter job" {
				old.Status.Submission, old.Status.DCJobID = sub, "job-1"
				if tc.oldPhase == stargate.JobPending {
					old.Status.DCJobID = ""
				}
			}
			j := old.DeepCopy()
			j.Status = tc.status
			matcher.Test(t, tc.want, ValidateJobStatusUpdate(j, old))
		})
	}
}

func validDatacenter() *stargate.Datacenter {
	return &stargate.Datacenter{
		ObjectMeta: metav1.ObjectMeta{Name: "dc-west", ResourceVersion: "1"},
		Spec:       stargate.DatacenterSpec{Endpoint: "https://dc-west.example", MaxConcurrentJobs: ptr.To[int32](10)},
	}
}

func TestValidateDatacenter(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*stargate.Datacenter)
		want   field.ErrorList
	}{
		{"valid", func(*stargate.Datacenter) {}, nil},
		{"valid paused http loopback", func(d *stargate.Datacenter) { d.Spec.Endpoint, d.Spec.Paused = "http://127.0.0.1:8080", true }, nil},
		{"namespaced", func(d *stargate.Datacenter) { d.Namespace = "default" },
			field.ErrorList{field.Forbidden(field.NewPath("metadata", "namespace"), "")}},
		{"name is not a namespace name", func(d *stargate.Datacenter) { d.Name = "dc.west" },
			field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), nil, "")}},
		{"missing endpoint", func(d *stargate.Datacenter) { d.Spec.Endpoint = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "endpoint"), "")}},
		{"endpoint without scheme", func(d *stargate.Datacenter) { d.Spec.Endpoint = "dc-west.example:8080" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "endpoint"), nil, "")}},
		{"endpoint with token in it", func(d *stargate.Datacenter) { d.Spec.Endpoint = "https://token:s3cret@dc-west.example" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "endpoint"), nil, "")}},
		{"zero concurrency", func(d *stargate.Datacenter) { d.Spec.MaxConcurrentJobs = ptr.To[int32](0) },
			field.ErrorList{field.Invalid(field.NewPath("spec", "maxConcurrentJobs"), nil, "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := validDatacenter()
			tc.mutate(d)
			matcher.Test(t, tc.want, ValidateDatacenter(d))
		})
	}
}

func TestValidateDatacenterUpdates(t *testing.T) {
	old := validDatacenter()
	d := old.DeepCopy()
	d.Spec.Endpoint = "mailto:x"
	matcher.Test(t, field.ErrorList{field.Invalid(field.NewPath("spec", "endpoint"), nil, "")}, ValidateDatacenterUpdate(d, old))

	d = old.DeepCopy()
	d.Status.ActiveJobs = -1
	matcher.Test(t, field.ErrorList{field.Invalid(field.NewPath("status", "activeJobs"), nil, "")}, ValidateDatacenterStatusUpdate(d, old))

	d = old.DeepCopy()
	d.Status.ActiveJobs = 4
	d.Status.Conditions = []metav1.Condition{{Type: "Ready", Status: "True", Reason: "Probed", LastTransitionTime: metav1.Now()}}
	matcher.Test(t, nil, ValidateDatacenterStatusUpdate(d, old))
}

func TestValidateRepaveRequest(t *testing.T) {
	valid := func() *stargate.RepaveRequest {
		return &stargate.RepaveRequest{Spec: stargate.RepaveRequestSpec{TemplateRef: stargate.LocalObjectReference{Name: "os-2-0-0"}}}
	}
	tests := []struct {
		name   string
		mutate func(*stargate.RepaveRequest)
		want   field.ErrorList
	}{
		{"valid", func(*stargate.RepaveRequest) {}, nil},
		{"with limits", func(r *stargate.RepaveRequest) {
			r.Spec.BackoffLimit, r.Spec.ActiveDeadlineSeconds, r.Spec.TTLSecondsAfterFinished = ptr.To[int32](1), ptr.To[int64](60), ptr.To[int32](0)
		}, nil},
		{"no template", func(r *stargate.RepaveRequest) { r.Spec.TemplateRef.Name = "" },
			field.ErrorList{field.Required(field.NewPath("spec", "templateRef", "name"), "")}},
		{"bad template name", func(r *stargate.RepaveRequest) { r.Spec.TemplateRef.Name = "OS 2" },
			field.ErrorList{field.Invalid(field.NewPath("spec", "templateRef", "name"), nil, "")}},
		{"bad limits", func(r *stargate.RepaveRequest) {
			r.Spec.BackoffLimit, r.Spec.ActiveDeadlineSeconds, r.Spec.TTLSecondsAfterFinished = ptr.To[int32](-1), ptr.To[int64](0), ptr.To[int32](-1)
		}, field.ErrorList{field.Invalid(field.NewPath("spec", "backoffLimit"), nil, ""),
			field.Invalid(field.NewPath("spec", "activeDeadlineSeconds"), nil, ""),
			field.Invalid(field.NewPath("spec", "ttlSecondsAfterFinished"), nil, "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := valid()
			tc.mutate(r)
			matcher.Test(t, tc.want, ValidateRepaveRequest(r, "server-001"))
		})
	}
	if spec := RepaveJobSpec(valid(), "server-001"); spec.HardwareRef.Name != "server-001" || spec.Operation != stargate.OperationRepave {
		t.Errorf("repave job spec %+v", spec)
	}
}
