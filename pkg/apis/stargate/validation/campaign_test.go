package validation

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
)

// validCampaign is a repave Campaign as the server sees it: defaulted.
func validCampaign() *stargate.Campaign {
	return &stargate.Campaign{
		ObjectMeta: metav1.ObjectMeta{Name: "os-2-rollout", ResourceVersion: "1"},
		Spec: stargate.CampaignSpec{
			Operation:          stargate.OperationRepave,
			TemplateRef:        &stargate.LocalObjectReference{Name: "os-2-0-0"},
			JobTemplate:        stargate.CampaignJobTemplate{BackoffLimit: ptr.To[int32](3)},
			HardwareSelector:   &metav1.LabelSelector{MatchLabels: map[string]string{"pool": "gpu"}},
			DatacenterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "eu"}},
			SkipUpToDate:       ptr.To(true),
			Waves: []stargate.CampaignWave{
				{Size: intstr.FromInt32(2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"topology.stargate.io/rack": "r1"}}},
				{Size: intstr.FromString("25%"), RequireApproval: true, BakeDuration: &metav1.Duration{Duration: time.Hour}},
			},
			MaxUnavailable: stargate.CampaignMaxUnavailable{
				Global: ptr.To(intstr.FromString("10%")), PerDatacenter: ptr.To(intstr.FromInt32(5)), PerFailureDomain: ptr.To(intstr.FromInt32(1)),
			},
			FailureDomainLabel:        "topology.stargate.io/rack",
			MaxFailureDomainsInFlight: ptr.To[int32](2),
			FailurePolicy: stargate.CampaignFailurePolicy{
				MaxFailures: stargate.CampaignFailureBudgets{Global: ptr.To(intstr.FromString("5%")), PerDatacenter: ptr.To(intstr.FromInt32(0))},
				Action:      stargate.CampaignFailurePause,
				InFlight:    stargate.CampaignInFlightFinish,
			},
			MaintenanceWindows: []stargate.MaintenanceWindow{{
				Days: []string{"Sat", "Sun"}, Start: "22:00", End: "06:00", TimeZone: "Europe/Paris",
				Cutoff: &metav1.Duration{Duration: time.Hour},
			}},
		},
	}
}

// rebootCampaign is validCampaign turned into a reboot, defaulted as such.
func rebootCampaign(c *stargate.Campaign) {
	c.Spec.Operation, c.Spec.TemplateRef, c.Spec.SkipUpToDate = stargate.OperationReboot, nil, nil
}

func TestValidateCampaign(t *testing.T) {
	spec := field.NewPath("spec")
	waves := spec.Child("waves")
	window := spec.Child("maintenanceWindows").Index(0)
	invalid := func(p *field.Path) field.ErrorList { return field.ErrorList{field.Invalid(p, nil, "")} }
	tests := []struct {
		name   string
		mutate func(*stargate.Campaign)
		want   field.ErrorList
	}{
		{"valid repave", func(*stargate.Campaign) {}, nil},
		{"valid reboot", rebootCampaign, nil},
		{"valid power-off, skipUpToDate false", func(c *stargate.Campaign) {
			rebootCampaign(c)
			c.Spec.Operation, c.Spec.SkipUpToDate = stargate.OperationPowerOff, ptr.To(false)
		}, nil},
		{"valid power-on, everything empty", func(c *stargate.Campaign) {
			rebootCampaign(c)
			c.Spec.Operation = stargate.OperationPowerOn
			c.Spec.HardwareSelector, c.Spec.DatacenterSelector, c.Spec.MaintenanceWindows = nil, nil, nil
			c.Spec.FailureDomainLabel, c.Spec.MaxFailureDomainsInFlight, c.Spec.MaxUnavailable.PerFailureDomain = "", nil, nil
		}, nil},
		{"valid limits at their edges", func(c *stargate.Campaign) {
			c.Spec.Waves = []stargate.CampaignWave{{Size: intstr.FromString("1%")}, {Size: intstr.FromString("100%"), BakeDuration: &metav1.Duration{}}}
			c.Spec.MaxUnavailable.Global = ptr.To(intstr.FromString("100%"))
			c.Spec.FailurePolicy.MaxFailures.Global = ptr.To(intstr.FromString("0%"))
			c.Spec.FailurePolicy.MaxFailures.PerWave = ptr.To(intstr.FromString("100%"))
			c.Spec.FailurePolicy.Action, c.Spec.FailurePolicy.InFlight = stargate.CampaignFailureCancel, stargate.CampaignInFlightCancel
			c.Spec.ApprovedWaves, c.Spec.TTLSecondsAfterFinished = 0, ptr.To[int32](0)
			c.Spec.JobTemplate = stargate.CampaignJobTemplate{BackoffLimit: ptr.To[int32](0), ActiveDeadlineSeconds: ptr.To[int64](1), TTLSecondsAfterFinished: ptr.To[int32](0)}
		}, nil},
		{"valid windows: every day, 24 hours, 00:00 to 23:59", func(c *stargate.Campaign) {
			c.Spec.MaintenanceWindows = []stargate.MaintenanceWindow{
				{Start: "08:00", End: "08:00", TimeZone: "UTC", Cutoff: &metav1.Duration{Duration: 23 * time.Hour}},
				{Days: []string{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}, Start: "00:00", End: "23:59", TimeZone: "America/New_York",
					DatacenterSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"region": "us"}}},
			}
		}, nil},

		// metadata
		{"namespaced", func(c *stargate.Campaign) { c.Namespace = "default" },
			field.ErrorList{field.Forbidden(field.NewPath("metadata", "namespace"), "")}},
		{"bad name", func(c *stargate.Campaign) { c.Name = "OS_2" }, invalid(field.NewPath("metadata", "name"))},
		{"name too long for a label", func(c *stargate.Campaign) { c.Name = strings.Repeat("a", 64) }, invalid(field.NewPath("metadata", "name"))},

		// operation and template
		{"missing operation", func(c *stargate.Campaign) { rebootCampaign(c); c.Spec.Operation = "" },
			field.ErrorList{field.Required(spec.Child("operation"), "")}},
		{"unknown operation", func(c *stargate.Campaign) { rebootCampaign(c); c.Spec.Operation = "explode" },
			field.ErrorList{field.NotSupported[string](spec.Child("operation"), "explode", nil)}},
		{"repave without template", func(c *stargate.Campaign) { c.Spec.TemplateRef = nil },
			field.ErrorList{field.Required(spec.Child("templateRef", "name"), "")}},
		{"repave with a bad template name", func(c *stargate.Campaign) { c.Spec.TemplateRef.Name = "OS 2" },
			invalid(spec.Child("templateRef", "name"))},
		{"reboot with template", func(c *stargate.Campaign) {
			rebootCampaign(c)
			c.Spec.TemplateRef = &stargate.LocalObjectReference{Name: "os-2-0-0"}
		}, field.ErrorList{field.Forbidden(spec.Child("templateRef"), "")}},
		{"reboot skipping up-to-date servers", func(c *stargate.Campaign) { rebootCampaign(c); c.Spec.SkipUpToDate = ptr.To(true) },
			field.ErrorList{field.Forbidden(spec.Child("skipUpToDate"), "")}},

		// selectors
		{"bad hardware selector", func(c *stargate.Campaign) {
			c.Spec.HardwareSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"bad key!": "x"}}
		}, invalid(spec.Child("hardwareSelector", "matchLabels"))},
		{"bad datacenter selector", func(c *stargate.Campaign) {
			c.Spec.DatacenterSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "region", Operator: "In"}}}
		}, field.ErrorList{field.Required(spec.Child("datacenterSelector", "matchExpressions").Index(0).Child("values"), "")}},

		// int-or-percent
		{"wave size 0", func(c *stargate.Campaign) { c.Spec.Waves[0].Size = intstr.FromInt32(0) }, invalid(waves.Index(0).Child("size"))},
		{"wave size 0%", func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("0%") }, invalid(waves.Index(1).Child("size"))},
		{"wave size negative", func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromInt32(-3) }, invalid(waves.Index(1).Child("size"))},
		{"wave size abc", func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("abc") }, invalid(waves.Index(1).Child("size"))},
		{"wave size without percent sign", func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("25") }, invalid(waves.Index(1).Child("size"))},
		{"wave size -1%", func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("-1%") }, invalid(waves.Index(1).Child("size"))},
		{"wave size 101%", func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("101%") }, invalid(waves.Index(1).Child("size"))},
		{"wave size 2.5%", func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("2.5%") }, invalid(waves.Index(1).Child("size"))},
		{"bad wave selector", func(c *stargate.Campaign) {
			c.Spec.Waves[1].Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"rack": "not a value"}}
		}, invalid(waves.Index(1).Child("selector", "matchLabels"))},
		{"negative bake", func(c *stargate.Campaign) { c.Spec.Waves[1].BakeDuration = &metav1.Duration{Duration: -time.Second} },
			invalid(waves.Index(1).Child("bakeDuration"))},
		{"too many waves", func(c *stargate.Campaign) {
			c.Spec.Waves = make([]stargate.CampaignWave, maxCampaignWaves+1)
			for i := range c.Spec.Waves {
				c.Spec.Waves[i].Size = intstr.FromInt32(1)
			}
		}, field.ErrorList{field.TooMany(waves, maxCampaignWaves+1, maxCampaignWaves)}},
		{"maxUnavailable global 0", func(c *stargate.Campaign) { c.Spec.MaxUnavailable.Global = ptr.To(intstr.FromInt32(0)) },
			invalid(spec.Child("maxUnavailable", "global"))},
		{"maxUnavailable perDatacenter 0%", func(c *stargate.Campaign) { c.Spec.MaxUnavailable.PerDatacenter = ptr.To(intstr.FromString("0%")) },
			invalid(spec.Child("maxUnavailable", "perDatacenter"))},
		{"maxUnavailable perFailureDomain 101%", func(c *stargate.Campaign) {
			c.Spec.MaxUnavailable.PerFailureDomain = ptr.To(intstr.FromString("101%"))
		}, invalid(spec.Child("maxUnavailable", "perFailureDomain"))},
		{"maxFailures global -1", func(c *stargate.Campaign) { c.Spec.FailurePolicy.MaxFailures.Global = ptr.To(intstr.FromInt32(-1)) },
			invalid(spec.Child("failurePolicy", "maxFailures", "global"))},
		{"maxFailures perDatacenter abc", func(c *stargate.Campaign) {
			c.Spec.FailurePolicy.MaxFailures.PerDatacenter = ptr.To(intstr.FromString("abc"))
		}, invalid(spec.Child("failurePolicy", "maxFailures", "perDatacenter"))},
		{"maxFailures perWave -1%", func(c *stargate.Campaign) {
			c.Spec.FailurePolicy.MaxFailures.PerWave = ptr.To(intstr.FromString("-1%"))
		}, invalid(spec.Child("failurePolicy", "maxFailures", "perWave"))},

		// failure domains
		{"bad failure domain label", func(c *stargate.Campaign) { c.Spec.FailureDomainLabel = "rack label" },
			invalid(spec.Child("failureDomainLabel"))},
		{"perFailureDomain without a label", func(c *stargate.Campaign) {
			c.Spec.FailureDomainLabel, c.Spec.MaxFailureDomainsInFlight = "", nil
		}, field.ErrorList{field.Required(spec.Child("failureDomainLabel"), "")}},
		{"maxFailureDomainsInFlight without a label", func(c *stargate.Campaign) {
			c.Spec.FailureDomainLabel, c.Spec.MaxUnavailable.PerFailureDomain = "", nil
		}, field.ErrorList{field.Required(spec.Child("failureDomainLabel"), "")}},
		{"no failure domains in flight", func(c *stargate.Campaign) { c.Spec.MaxFailureDomainsInFlight = ptr.To[int32](0) },
			invalid(spec.Child("maxFailureDomainsInFlight"))},

		// failure policy
		{"unknown action", func(c *stargate.Campaign) { c.Spec.FailurePolicy.Action = "Explode" },
			field.ErrorList{field.NotSupported[string](spec.Child("failurePolicy", "action"), "Explode", nil)}},
		{"missing action", func(c *stargate.Campaign) { c.Spec.FailurePolicy.Action = "" },
			field.ErrorList{field.Required(spec.Child("failurePolicy", "action"), "")}},
		{"unknown inFlight", func(c *stargate.Campaign) { c.Spec.FailurePolicy.InFlight = "Pause" },
			field.ErrorList{field.NotSupported[string](spec.Child("failurePolicy", "inFlight"), "Pause", nil)}},
		{"missing inFlight", func(c *stargate.Campaign) { c.Spec.FailurePolicy.InFlight = "" },
			field.ErrorList{field.Required(spec.Child("failurePolicy", "inFlight"), "")}},

		// maintenance windows
		{"unknown day", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].Days = []string{"Sat", "Sunday"} },
			field.ErrorList{field.NotSupported[string](window.Child("days").Index(1), "Sunday", nil)}},
		{"duplicate day", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].Days = []string{"Sat", "Sun", "Sat"} },
			field.ErrorList{field.Duplicate(window.Child("days").Index(2), "Sat")}},
		{"missing start", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].Start = "" },
			field.ErrorList{field.Required(window.Child("start"), "")}},
		{"start 24:00", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].Start = "24:00" }, invalid(window.Child("start"))},
		{"start without leading zero", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].Start = "9:00" }, invalid(window.Child("start"))},
		{"end 12:60", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].End = "12:60" }, invalid(window.Child("end"))},
		{"end with seconds", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].End = "06:00:00" }, invalid(window.Child("end"))},
		{"unknown time zone", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].TimeZone = "Europe/Atlantis" },
			invalid(window.Child("timeZone"))},
		{"Local time zone", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].TimeZone = "Local" }, invalid(window.Child("timeZone"))},
		{"missing time zone", func(c *stargate.Campaign) { c.Spec.MaintenanceWindows[0].TimeZone = "" },
			field.ErrorList{field.Required(window.Child("timeZone"), "")}},
		{"negative cutoff", func(c *stargate.Campaign) {
			c.Spec.MaintenanceWindows[0].Cutoff = &metav1.Duration{Duration: -time.Minute}
		}, invalid(window.Child("cutoff"))},
		{"cutoff as long as an overnight window", func(c *stargate.Campaign) {
			c.Spec.MaintenanceWindows[0].Cutoff = &metav1.Duration{Duration: 8 * time.Hour} // 22:00 to 06:00
		}, invalid(window.Child("cutoff"))},
		{"cutoff longer than a day window", func(c *stargate.Campaign) {
			w := &c.Spec.MaintenanceWindows[0]
			w.Start, w.End, w.Cutoff = "09:00", "10:30", &metav1.Duration{Duration: 2 * time.Hour}
		}, invalid(window.Child("cutoff"))},
		{"bad window selector", func(c *stargate.Campaign) {
			c.Spec.MaintenanceWindows[0].DatacenterSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"-x": "y"}}
		}, invalid(window.Child("datacenterSelector", "matchLabels"))},
		{"second window wrong", func(c *stargate.Campaign) {
			c.Spec.MaintenanceWindows = append(c.Spec.MaintenanceWindows, stargate.MaintenanceWindow{Start: "01:00", End: "02:00", TimeZone: "Mars/Olympus"})
		}, invalid(spec.Child("maintenanceWindows").Index(1).Child("timeZone"))},

		// job template and the rest
		{"bad job template", func(c *stargate.Campaign) {
			c.Spec.JobTemplate = stargate.CampaignJobTemplate{BackoffLimit: ptr.To[int32](-1), ActiveDeadlineSeconds: ptr.To[int64](0), TTLSecondsAfterFinished: ptr.To[int32](-1)}
		}, field.ErrorList{
			field.Invalid(spec.Child("jobTemplate", "backoffLimit"), nil, ""),
			field.Invalid(spec.Child("jobTemplate", "activeDeadlineSeconds"), nil, ""),
			field.Invalid(spec.Child("jobTemplate", "ttlSecondsAfterFinished"), nil, ""),
		}},
		{"negative ttl", func(c *stargate.Campaign) { c.Spec.TTLSecondsAfterFinished = ptr.To[int32](-1) },
			invalid(spec.Child("ttlSecondsAfterFinished"))},
		{"negative approvedWaves", func(c *stargate.Campaign) { c.Spec.ApprovedWaves = -1 }, invalid(spec.Child("approvedWaves"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := validCampaign()
			tc.mutate(c)
			matcher.Test(t, tc.want, ValidateCampaign(c))
		})
	}
}

func TestCampaignMessagesSayWhy(t *testing.T) {
	c := validCampaign()
	c.Spec.MaxUnavailable.Global = ptr.To(intstr.FromInt32(0))
	c.Spec.FailureDomainLabel = ""
	errs := ValidateCampaign(c)
	var text []string
	for _, e := range errs {
		text = append(text, e.Error())
	}
	all := strings.Join(text, "\n")
	for _, want := range []string{
		"spec.maxUnavailable.global: Invalid value: \"0\": must be greater than 0: a limit of 0 would never let a Job start",
		"spec.failureDomainLabel: Required value: spec.maxUnavailable.perFailureDomain and spec.maxFailureDomainsInFlight need it",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("want %q in:\n%s", want, all)
		}
	}
	c = validCampaign()
	c.Spec.MaintenanceWindows[0].Cutoff = &metav1.Duration{Duration: 9 * time.Hour}
	if errs := ValidateCampaign(c); len(errs) != 1 || !strings.Contains(errs[0].Detail, "(8h0m0s from 22:00 to 06:00)") {
		t.Errorf("the cutoff error should state the window's length: %v", errs)
	}
}

func TestValidateCampaignUpdate(t *testing.T) {
	spec := field.NewPath("spec")
	immutable := func(name string) field.ErrorList {
		return field.ErrorList{field.Forbidden(spec.Child(name), "").WithOrigin("immutable")}
	}
	started := func(c *stargate.Campaign) { c.Status.StartTime = &metav1.Time{Time: time.Now()} }
	tests := []struct {
		name   string
		old    func(*stargate.Campaign)
		mutate func(*stargate.Campaign)
		want   field.ErrorList
	}{
		{"no change", func(*stargate.Campaign) {}, func(*stargate.Campaign) {}, nil},
		{"labels", func(*stargate.Campaign) {}, func(c *stargate.Campaign) { c.Labels = map[string]string{"team": "os"} }, nil},
		{"pause and resume", func(c *stargate.Campaign) { c.Spec.Paused = true }, func(c *stargate.Campaign) { c.Spec.Paused = false }, nil},
		{"approve", started, func(c *stargate.Campaign) { c.Spec.ApprovedWaves = 2 }, nil},
		{"cancel", started, func(c *stargate.Campaign) { c.Spec.Cancel = true }, nil},
		{"raise and lower limits, budgets, windows, job template, ttl", started, func(c *stargate.Campaign) {
			c.Spec.MaxUnavailable.Global = ptr.To(intstr.FromString("50%"))
			c.Spec.MaxUnavailable.PerDatacenter = ptr.To(intstr.FromInt32(1))
			c.Spec.MaxFailureDomainsInFlight = ptr.To[int32](10)
			c.Spec.FailurePolicy = stargate.CampaignFailurePolicy{
				MaxFailures: stargate.CampaignFailureBudgets{PerWave: ptr.To(intstr.FromInt32(3))},
				Action:      stargate.CampaignFailureCancel, InFlight: stargate.CampaignInFlightCancel,
			}
			c.Spec.MaintenanceWindows = nil
			c.Spec.JobTemplate.ActiveDeadlineSeconds = ptr.To[int64](3600)
			c.Spec.TTLSecondsAfterFinished = ptr.To[int32](86400)
		}, nil},
		{"waves before the start", func(*stargate.Campaign) {}, func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("50%") }, nil},
		{"waves once started", started, func(c *stargate.Campaign) { c.Spec.Waves[1].Size = intstr.FromString("50%") }, immutable("waves")},
		{"operation", func(*stargate.Campaign) {}, rebootCampaign, field.ErrorList{
			field.Forbidden(spec.Child("operation"), ""), field.Forbidden(spec.Child("templateRef"), ""), field.Forbidden(spec.Child("skipUpToDate"), ""),
		}},
		{"template", func(*stargate.Campaign) {}, func(c *stargate.Campaign) { c.Spec.TemplateRef.Name = "os-3" }, immutable("templateRef")},
		{"hardware selector", func(*stargate.Campaign) {}, func(c *stargate.Campaign) { c.Spec.HardwareSelector = nil }, immutable("hardwareSelector")},
		{"datacenter selector", func(*stargate.Campaign) {}, func(c *stargate.Campaign) {
			c.Spec.DatacenterSelector.MatchLabels["region"] = "us"
		}, immutable("datacenterSelector")},
		{"skipUpToDate", func(*stargate.Campaign) {}, func(c *stargate.Campaign) { c.Spec.SkipUpToDate = ptr.To(false) }, immutable("skipUpToDate")},
		{"failureDomainLabel", func(*stargate.Campaign) {}, func(c *stargate.Campaign) { c.Spec.FailureDomainLabel = "rack" }, immutable("failureDomainLabel")},
		{"un-cancel", func(c *stargate.Campaign) { c.Spec.Cancel = true }, func(c *stargate.Campaign) { c.Spec.Cancel = false },
			field.ErrorList{field.Forbidden(spec.Child("cancel"), "")}},
		{"approval withdrawn", func(c *stargate.Campaign) { c.Spec.ApprovedWaves = 2 }, func(c *stargate.Campaign) { c.Spec.ApprovedWaves = 1 },
			field.ErrorList{field.Forbidden(spec.Child("approvedWaves"), "")}},
		{"new spec still validated", func(*stargate.Campaign) {}, func(c *stargate.Campaign) { c.Spec.MaxUnavailable.Global = ptr.To(intstr.FromInt32(0)) },
			field.ErrorList{field.Invalid(spec.Child("maxUnavailable", "global"), nil, "")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := validCampaign()
			tc.old(old)
			c := old.DeepCopy()
			tc.mutate(c)
			errs := ValidateCampaignUpdate(c, old)
			matcher.Test(t, tc.want, errs)
			for _, e := range errs {
				if e.Type == field.ErrorTypeForbidden && !strings.Contains(e.Detail, "Campaign") {
					t.Errorf("%s: the refusal should tell the operator what to do: %q", e.Field, e.Detail)
				}
			}
		})
	}
}

func TestValidateCampaignStatusUpdate(t *testing.T) {
	status := field.NewPath("status")
	now := metav1.Now()
	before := metav1.NewTime(now.Add(-time.Hour))
	tests := []struct {
		name   string
		status stargate.CampaignStatus
		want   field.ErrorList
	}{
		{"empty", stargate.CampaignStatus{}, nil},
		{"full", stargate.CampaignStatus{
			Phase: stargate.CampaignRunning, ObservedGeneration: 2, CurrentWave: 1, StartTime: &before, WaveStartTime: &now,
			Conditions: []metav1.Condition{{Type: "Validated", Status: "True", Reason: "TemplatesFound", LastTransitionTime: now}},
			Counts:     stargate.CampaignCounts{Targets: 10, Skipped: 1, Pending: 5, Running: 2, Succeeded: 1, Failed: 1},
			Datacenters: []stargate.CampaignDatacenterStatus{
				{Name: "dc-west", Counts: stargate.CampaignCounts{Targets: 6}, PausedReason: "OutsideWindow", NextWindow: &now},
				{Name: "dc-east", Counts: stargate.CampaignCounts{Targets: 4}},
			},
			Plan: []stargate.CampaignWavePlan{{Number: 1, Members: 2, Datacenters: []stargate.CampaignDatacenterPlan{{Name: "dc-west", Members: 2}},
				FirstMembers: []string{"dc-west/server-001", "dc-west/server-002"}}},
			Failures: []stargate.CampaignFailure{{Datacenter: "dc-west", Hardware: "server-003", Job: "os-2-rollout-server-003", Wave: 1}},
		}, nil},
		{"unknown phase", stargate.CampaignStatus{Phase: "Exploded"},
			field.ErrorList{field.NotSupported[string](status.Child("phase"), "Exploded", nil)}},
		{"negative counts", stargate.CampaignStatus{Counts: stargate.CampaignCounts{Targets: -1, Cancelled: -2}},
			field.ErrorList{field.Invalid(status.Child("counts", "targets"), nil, ""), field.Invalid(status.Child("counts", "cancelled"), nil, "")}},
		{"negative datacenter count", stargate.CampaignStatus{Datacenters: []stargate.CampaignDatacenterStatus{
			{Name: "dc-west"}, {Name: "dc-east", Counts: stargate.CampaignCounts{Running: -1}}}},
			field.ErrorList{field.Invalid(status.Child("datacenters").Index(1).Child("counts", "running"), nil, "")}},
		{"duplicate datacenter", stargate.CampaignStatus{Datacenters: []stargate.CampaignDatacenterStatus{{Name: "dc-west"}, {Name: "dc-west"}}},
			field.ErrorList{field.Duplicate(status.Child("datacenters").Index(1).Child("name"), "dc-west")}},
		{"negative wave", stargate.CampaignStatus{CurrentWave: -1}, field.ErrorList{field.Invalid(status.Child("currentWave"), nil, "")}},
		{"negative generation", stargate.CampaignStatus{ObservedGeneration: -1},
			field.ErrorList{field.Invalid(status.Child("observedGeneration"), nil, "")}},
		{"completion before start", stargate.CampaignStatus{StartTime: &now, CompletionTime: &before},
			field.ErrorList{field.Invalid(status.Child("completionTime"), nil, "")}},
		{"plan counts from 1", stargate.CampaignStatus{Plan: []stargate.CampaignWavePlan{{Number: 0, Members: -1}}},
			field.ErrorList{field.Invalid(status.Child("plan").Index(0).Child("number"), nil, ""), field.Invalid(status.Child("plan").Index(0).Child("members"), nil, "")}},
		{"too many failures", stargate.CampaignStatus{Failures: make([]stargate.CampaignFailure, MaxCampaignFailures+1)},
			field.ErrorList{field.TooMany(status.Child("failures"), MaxCampaignFailures+1, MaxCampaignFailures)}},
		{"bad condition", stargate.CampaignStatus{Conditions: []metav1.Condition{{Type: "Paused", Status: "Maybe", Reason: "ManualPause", LastTransitionTime: now}}},
			field.ErrorList{field.NotSupported[string](status.Child("conditions").Index(0).Child("status"), "Maybe", nil)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old := validCampaign()
			c := old.DeepCopy()
			c.Status = tc.status
			matcher.Test(t, tc.want, ValidateCampaignStatusUpdate(c, old))
		})
	}
	// Once started, startTime stays: cleared, the controller would plan
	// the Campaign again and run its members a second time.
	started := validCampaign()
	started.Status.StartTime = &before
	for name, startTime := range map[string]*metav1.Time{"kept": &before, "cleared": nil, "moved": &now} {
		c := started.DeepCopy()
		c.Status.StartTime = startTime
		var want field.ErrorList
		if name != "kept" {
			want = field.ErrorList{field.Invalid(status.Child("startTime"), nil, "")}
		}
		t.Run("startTime "+name, func(t *testing.T) { matcher.Test(t, want, ValidateCampaignStatusUpdate(c, started)) })
	}
}
