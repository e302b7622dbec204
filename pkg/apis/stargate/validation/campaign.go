package validation

import (
	"fmt"
	// Time zones are read from the binary, not from the machine's zoneinfo,
	// so that a Campaign valid on one replica is valid on every replica
	// (package campaign, which reads them, embeds them too).
	_ "time/tzdata"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/campaign"
)

const (
	// MaxCampaignFailures is how many failed members status.failures lists.
	MaxCampaignFailures = 50
	// maxCampaignWaves and maxMaintenanceWindows bound the lists of a
	// Campaign's spec, so that it stays a small object however many members
	// it has.
	maxCampaignWaves      = 100
	maxMaintenanceWindows = 50
	// immutableCampaignField is the detail of an edit refused because the
	// members (or what is done to them) were fixed with the Campaign.
	immutableCampaignField = "cannot be changed once the Campaign exists; create a new Campaign"
)

var (
	campaignPhases = sets.New(stargate.CampaignPending, stargate.CampaignRunning, stargate.CampaignPaused,
		stargate.CampaignComplete, stargate.CampaignFailed, stargate.CampaignCancelled)
	failureActions  = []string{string(stargate.CampaignFailurePause), string(stargate.CampaignFailureCancel)}
	inFlightActions = []string{string(stargate.CampaignInFlightFinish), string(stargate.CampaignInFlightCancel)}

	failureActionSet, inFlightActionSet, weekdaySet = sets.New(failureActions...), sets.New(inFlightActions...), sets.New(campaign.Weekdays...)
)

// ValidateCampaign validates a new Campaign.
func ValidateCampaign(c *stargate.Campaign) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&c.ObjectMeta, false, campaignName, field.NewPath("metadata"))
	allErrs = append(allErrs, validateCampaignSpec(&c.Spec, field.NewPath("spec"))...)
	return allErrs
}

// campaignName is a DNS subdomain short enough to be a label value: every Job
// of the Campaign carries its name in the stargate.io/campaign label.
func campaignName(name string, prefix bool) []string {
	msgs := apimachineryvalidation.NameIsDNSSubdomain(name, prefix)
	// A generated name is cut to fit by the name generator.
	if !prefix && len(name) > validation.LabelValueMaxLength {
		msgs = append(msgs, fmt.Sprintf("must be no more than %d characters: the name is the value of the stargate.io/campaign label on the Campaign's Jobs",
			validation.LabelValueMaxLength))
	}
	return msgs
}

// ValidateCampaignUpdate validates an update of a Campaign's spec and
// metadata. What selects the members and what is done to them is fixed with
// the Campaign; the waves are fixed once it started; pausing, resuming,
// approving, cancelling and changing limits, budgets and windows are allowed.
func ValidateCampaignUpdate(c, old *stargate.Campaign) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&c.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("spec")
	spec, oldSpec := &c.Spec, &old.Spec
	allErrs = append(allErrs, validateCampaignSpec(spec, fldPath)...)

	immutable := func(name string, value, oldValue interface{}) {
		if !apiequality.Semantic.DeepEqual(value, oldValue) {
			allErrs = append(allErrs, field.Forbidden(fldPath.Child(name), immutableCampaignField).WithOrigin("immutable"))
		}
	}
	immutable("operation", spec.Operation, oldSpec.Operation)
	immutable("templateRef", spec.TemplateRef, oldSpec.TemplateRef)
	immutable("hardwareSelector", spec.HardwareSelector, oldSpec.HardwareSelector)
	immutable("datacenterSelector", spec.DatacenterSelector, oldSpec.DatacenterSelector)
	immutable("skipUpToDate", spec.SkipUpToDate, oldSpec.SkipUpToDate)
	immutable("failureDomainLabel", spec.FailureDomainLabel, oldSpec.FailureDomainLabel)
	if old.Status.StartTime != nil && !apiequality.Semantic.DeepEqual(spec.Waves, oldSpec.Waves) {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("waves"),
			"cannot be changed once the Campaign started: its members were split into these waves; create a new Campaign").WithOrigin("immutable"))
	}
	if oldSpec.Cancel && !spec.Cancel {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("cancel"), "a cancelled Campaign cannot be resumed; create a new Campaign"))
	}
	if spec.ApprovedWaves < oldSpec.ApprovedWaves {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("approvedWaves"),
			fmt.Sprintf("cannot decrease (from %d): an approved wave may already have started; set spec.paused to hold the Campaign", oldSpec.ApprovedWaves)))
	}
	return allErrs
}

// ValidateCampaignStatusUpdate validates a write to a Campaign's status subresource.
func ValidateCampaignStatusUpdate(c, old *stargate.Campaign) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&c.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	status := &c.Status
	if status.Phase != "" && !campaignPhases.Has(status.Phase) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("phase"), status.Phase, sets.List(campaignPhases)))
	}
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(status.ObservedGeneration, fldPath.Child("observedGeneration"))...)
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(status.CurrentWave), fldPath.Child("currentWave"))...)
	// startTime says the members are fixed (in the controller's ledger) and
	// Jobs may exist: cleared or moved, the Campaign would plan and run again.
	if old.Status.StartTime != nil && (status.StartTime == nil || !status.StartTime.Equal(old.Status.StartTime)) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("startTime"), status.StartTime, "may not be changed once set"))
	}
	if status.StartTime != nil && status.CompletionTime != nil && status.CompletionTime.Before(status.StartTime) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("completionTime"), status.CompletionTime, "must not be before startTime"))
	}
	allErrs = append(allErrs, validateCampaignCounts(&status.Counts, fldPath.Child("counts"))...)

	dcPath := fldPath.Child("datacenters")
	seen := sets.New[string]()
	for i := range status.Datacenters {
		dc := &status.Datacenters[i]
		allErrs = append(allErrs, validateListMapName(dc.Name, seen, dcPath.Index(i))...)
		allErrs = append(allErrs, validateCampaignCounts(&dc.Counts, dcPath.Index(i).Child("counts"))...)
	}

	planPath := fldPath.Child("plan")
	for i := range status.Plan {
		wave := &status.Plan[i]
		wavePath := planPath.Index(i)
		if wave.Number < 1 {
			allErrs = append(allErrs, field.Invalid(wavePath.Child("number"), wave.Number, "waves count from 1"))
		}
		allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(wave.Members), wavePath.Child("members"))...)
		seen := sets.New[string]()
		for j, dc := range wave.Datacenters {
			allErrs = append(allErrs, validateListMapName(dc.Name, seen, wavePath.Child("datacenters").Index(j))...)
			allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(dc.Members), wavePath.Child("datacenters").Index(j).Child("members"))...)
		}
	}
	if n := len(status.Failures); n > MaxCampaignFailures {
		allErrs = append(allErrs, field.TooMany(fldPath.Child("failures"), n, MaxCampaignFailures))
	}
	return allErrs
}

// validateListMapName checks the key of a list map keyed by a datacenter name.
func validateListMapName(name string, seen sets.Set[string], fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch {
	case name == "":
		allErrs = append(allErrs, field.Required(fldPath.Child("name"), "the Datacenter's name"))
	case seen.Has(name):
		allErrs = append(allErrs, field.Duplicate(fldPath.Child("name"), name))
	}
	seen.Insert(name)
	return allErrs
}

func validateCampaignCounts(counts *stargate.CampaignCounts, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, c := range []struct {
		name string
		n    int32
	}{
		{"targets", counts.Targets}, {"skipped", counts.Skipped}, {"pending", counts.Pending}, {"running", counts.Running},
		{"succeeded", counts.Succeeded}, {"failed", counts.Failed}, {"cancelled", counts.Cancelled},
	} {
		allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(c.n), fldPath.Child(c.name))...)
	}
	return allErrs
}

func validateCampaignSpec(spec *stargate.CampaignSpec, fldPath *field.Path) field.ErrorList {
	allErrs := validateOperationAndTemplate(spec.Operation, spec.TemplateRef, fldPath)
	if spec.SkipUpToDate != nil && *spec.SkipUpToDate && spec.Operation != stargate.OperationRepave && operations.Has(spec.Operation) {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("skipUpToDate"),
			fmt.Sprintf("only a repave installs an OS a server can already have, not %s", spec.Operation)))
	}
	jt := &spec.JobTemplate
	allErrs = append(allErrs, validateJobLimits(jt.BackoffLimit, jt.ActiveDeadlineSeconds, jt.TTLSecondsAfterFinished, fldPath.Child("jobTemplate"))...)
	allErrs = append(allErrs, validateSelector(spec.HardwareSelector, fldPath.Child("hardwareSelector"))...)
	allErrs = append(allErrs, validateSelector(spec.DatacenterSelector, fldPath.Child("datacenterSelector"))...)
	allErrs = append(allErrs, validateWaves(spec.Waves, fldPath.Child("waves"))...)
	allErrs = append(allErrs, validateFailureDomains(spec, fldPath)...)

	unavailablePath := fldPath.Child("maxUnavailable")
	u := &spec.MaxUnavailable
	for _, l := range []namedLimit{{"global", u.Global}, {"perDatacenter", u.PerDatacenter}, {"perFailureDomain", u.PerFailureDomain}} {
		if l.value != nil {
			allErrs = append(allErrs, validateIntOrPercent(*l.value, 1, unavailablePath.Child(l.name),
				"must be greater than 0: a limit of 0 would never let a Job start and the Campaign would wait forever; set spec.paused to hold it")...)
		}
	}
	allErrs = append(allErrs, validateFailurePolicy(&spec.FailurePolicy, fldPath.Child("failurePolicy"))...)

	windowsPath := fldPath.Child("maintenanceWindows")
	if n := len(spec.MaintenanceWindows); n > maxMaintenanceWindows {
		allErrs = append(allErrs, field.TooMany(windowsPath, n, maxMaintenanceWindows))
	}
	for i := range spec.MaintenanceWindows {
		allErrs = append(allErrs, validateMaintenanceWindow(&spec.MaintenanceWindows[i], windowsPath.Index(i))...)
	}
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(spec.ApprovedWaves), fldPath.Child("approvedWaves"))...)
	if spec.TTLSecondsAfterFinished != nil {
		allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(*spec.TTLSecondsAfterFinished), fldPath.Child("ttlSecondsAfterFinished"))...)
	}
	return allErrs
}

func validateSelector(sel *metav1.LabelSelector, fldPath *field.Path) field.ErrorList {
	return metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, fldPath)
}

func validateWaves(waves []stargate.CampaignWave, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if n := len(waves); n > maxCampaignWaves {
		allErrs = append(allErrs, field.TooMany(fldPath, n, maxCampaignWaves))
	}
	for i := range waves {
		wave, wavePath := &waves[i], fldPath.Index(i)
		allErrs = append(allErrs, validateIntOrPercent(wave.Size, 1, wavePath.Child("size"),
			"must be 1 or more, or more than 0%: a wave of no member would never end")...)
		allErrs = append(allErrs, validateSelector(wave.Selector, wavePath.Child("selector"))...)
		if wave.BakeDuration != nil && wave.BakeDuration.Duration < 0 {
			allErrs = append(allErrs, field.Invalid(wavePath.Child("bakeDuration"), wave.BakeDuration.Duration.String(), "must be 0 or more"))
		}
	}
	return allErrs
}

// validateFailureDomains checks failureDomainLabel and the limits that need it.
func validateFailureDomains(spec *stargate.CampaignSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	labelPath := fldPath.Child("failureDomainLabel")
	if spec.FailureDomainLabel != "" {
		allErrs = append(allErrs, metav1validation.ValidateLabelName(spec.FailureDomainLabel, labelPath)...)
	}
	if n := spec.MaxFailureDomainsInFlight; n != nil && *n < 1 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("maxFailureDomainsInFlight"), *n,
			"must be at least 1: with 0 no Job could start; set spec.paused to hold the Campaign"))
	}
	var needing []string
	if spec.MaxUnavailable.PerFailureDomain != nil {
		needing = append(needing, "spec.maxUnavailable.perFailureDomain")
	}
	if spec.MaxFailureDomainsInFlight != nil {
		needing = append(needing, "spec.maxFailureDomainsInFlight")
	}
	if len(needing) > 0 && spec.FailureDomainLabel == "" {
		what := needing[0]
		if len(needing) == 2 {
			what = needing[0] + " and " + needing[1] + " need"
		} else {
			what += " needs"
		}
		allErrs = append(allErrs, field.Required(labelPath,
			what+" it: the Hardware label whose values are the failure domains, e.g. topology.stargate.io/rack"))
	}
	return allErrs
}

func validateFailurePolicy(policy *stargate.CampaignFailurePolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	budgetsPath := fldPath.Child("maxFailures")
	f := &policy.MaxFailures
	for _, l := range []namedLimit{{"global", f.Global}, {"perDatacenter", f.PerDatacenter}, {"perWave", f.PerWave}} {
		if l.value != nil {
			allErrs = append(allErrs, validateIntOrPercent(*l.value, 0, budgetsPath.Child(l.name),
				"must be 0 or more (0: the first failure trips the budget)")...)
		}
	}
	switch actionPath := fldPath.Child("action"); {
	case policy.Action == "":
		allErrs = append(allErrs, field.Required(actionPath, "one of Pause or Cancel"))
	case !failureActionSet.Has(string(policy.Action)):
		allErrs = append(allErrs, field.NotSupported(actionPath, policy.Action, failureActions))
	}
	switch inFlightPath := fldPath.Child("inFlight"); {
	case policy.InFlight == "":
		allErrs = append(allErrs, field.Required(inFlightPath, "one of Finish or Cancel"))
	case !inFlightActionSet.Has(string(policy.InFlight)):
		allErrs = append(allErrs, field.NotSupported(inFlightPath, policy.InFlight, inFlightActions))
	}
	return allErrs
}

func validateMaintenanceWindow(w *stargate.MaintenanceWindow, fldPath *field.Path) field.ErrorList {
	allErrs := validateSelector(w.DatacenterSelector, fldPath.Child("datacenterSelector"))
	seen := sets.New[string]()
	for i, day := range w.Days {
		dayPath := fldPath.Child("days").Index(i)
		switch {
		case !weekdaySet.Has(day):
			allErrs = append(allErrs, field.NotSupported(dayPath, day, campaign.Weekdays))
		case seen.Has(day):
			allErrs = append(allErrs, field.Duplicate(dayPath, day))
		}
		seen.Insert(day)
	}
	// The times and the time zone are read as the controller reads them.
	startErrs := validateClock(w.Start, fldPath.Child("start"))
	endErrs := validateClock(w.End, fldPath.Child("end"))
	allErrs = append(append(allErrs, startErrs...), endErrs...)
	tzPath := fldPath.Child("timeZone")
	if w.TimeZone == "" {
		allErrs = append(allErrs, field.Required(tzPath, "an IANA time zone name, e.g. Europe/Paris or UTC"))
	} else if _, err := campaign.ParseTimeZone(w.TimeZone); err != nil {
		allErrs = append(allErrs, field.Invalid(tzPath, w.TimeZone, "must be an IANA time zone name, e.g. Europe/Paris or UTC (not Local: a window does not move with the machine)"))
	}

	if w.Cutoff != nil {
		cutoffPath := fldPath.Child("cutoff")
		switch {
		case w.Cutoff.Duration < 0:
			allErrs = append(allErrs, field.Invalid(cutoffPath, w.Cutoff.Duration.String(), "must be 0 or more"))
		case len(startErrs) == 0 && len(endErrs) == 0:
			length, _ := campaign.Length(v1alpha1.MaintenanceWindow{Start: w.Start, End: w.End})
			if w.Cutoff.Duration >= length {
				allErrs = append(allErrs, field.Invalid(cutoffPath, w.Cutoff.Duration.String(),
					fmt.Sprintf("must be shorter than the window (%s from %s to %s): no Job could ever start in it", length, w.Start, w.End)))
			}
		}
	}
	return allErrs
}

// validateClock checks a time of day, HH:MM from 00:00 to 23:59.
func validateClock(s string, fldPath *field.Path) field.ErrorList {
	if s == "" {
		return field.ErrorList{field.Required(fldPath, "a time of day, HH:MM")}
	}
	if _, _, err := campaign.ParseClock(s); err != nil {
		return field.ErrorList{field.Invalid(fldPath, s, "must be a time of day HH:MM, from 00:00 to 23:59")}
	}
	return nil
}

// namedLimit is an optional int-or-percent field and its name in the API.
type namedLimit struct {
	name  string
	value *intstr.IntOrString
}

// validateIntOrPercent checks an int-or-percent field: an int of at least
// least, or a string "N%" with least <= N <= 100, parsed as
// intstr.GetScaledValueFromIntOrPercent parses it. tooSmall says why least.
func validateIntOrPercent(v intstr.IntOrString, least int, fldPath *field.Path, tooSmall string) field.ErrorList {
	n, err := intstr.GetScaledValueFromIntOrPercent(&v, 100, false)
	switch {
	case err != nil:
		return field.ErrorList{field.Invalid(fldPath, v.String(), `must be a number or a percentage, e.g. 5 or "25%"`)}
	case v.Type == intstr.String && (n < 0 || n > 100):
		return field.ErrorList{field.Invalid(fldPath, v.String(), "must be a percentage from 0% to 100%")}
	case n < least:
		return field.ErrorList{field.Invalid(fldPath, v.String(), tooSmall)}
	}
	return nil
}
