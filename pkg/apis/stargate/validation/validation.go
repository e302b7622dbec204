// Package validation checks stargate.io objects. Every function returns a
// field.ErrorList with exact paths and does no I/O: uniqueness and references
// are the registries' business.
package validation

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apimachineryvalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"stargate.io/stargate/pkg/apis/stargate"
)

const (
	// MaxTextLength bounds free-text inventory and version fields (an OS
	// version a datacenter reports included: longer ones are cut).
	MaxTextLength = 256
	// maxMessageLength bounds status messages written by the controller.
	maxMessageLength = 32 * 1024
	// MaxUserDataBytes bounds cloud-init user data; real clouds cap it lower
	// (16 KiB on EC2), this only stops abuse of etcd.
	MaxUserDataBytes = 256 * 1024
	// maxBackoffLimit keeps a typo from retrying a broken datacenter forever.
	maxBackoffLimit = 100
)

var (
	hardwareStates = sets.New(
		stargate.HardwareStateReady, stargate.HardwareStateProvisioning, stargate.HardwareStateRebooting,
		stargate.HardwareStateOff, stargate.HardwareStateError, stargate.HardwareStateUnknown)
	operations = sets.New(
		stargate.OperationRepave, stargate.OperationReboot, stargate.OperationPowerOff, stargate.OperationPowerOn)
	jobPhases = sets.New(stargate.JobPending, stargate.JobRunning, stargate.JobSucceeded, stargate.JobFailed)

	checksumPattern = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)
)

// NormalizeMAC returns mac in lower-case colon form (aa:bb:cc:dd:ee:01) when
// it is a 48-bit MAC address in any form net.ParseMAC knows, and ok=false
// otherwise. Strategies call it before validation so that one server cannot
// be registered twice under two spellings of its address.
func NormalizeMAC(mac string) (normalized string, ok bool) {
	hw, err := net.ParseMAC(strings.TrimSpace(mac))
	if err != nil || len(hw) != 6 {
		return mac, false
	}
	return hw.String(), true
}

// ValidateHardware validates a new Hardware.
func ValidateHardware(hw *stargate.Hardware) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&hw.ObjectMeta, true,
		apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateHardwareSpec(&hw.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateHardwareUpdate validates an update of a Hardware's spec and metadata.
func ValidateHardwareUpdate(hw, old *stargate.Hardware) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&hw.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateHardwareSpec(&hw.Spec, field.NewPath("spec"))...)
	if holder := old.Status.ActiveJob; holder != "" {
		// The Job sends the MAC and IPv4 it fixed when it started: another
		// Hardware given the old MAC meanwhile would be the same machine.
		msg := fmt.Sprintf("Job %s holds this Hardware and addresses the machine by what it had when it started; change it once the Job has finished", holder)
		if mac, _ := NormalizeMAC(hw.Spec.MAC); mac != old.Spec.MAC {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "mac"), msg))
		}
		if hw.Spec.IPv4 != old.Spec.IPv4 {
			allErrs = append(allErrs, field.Forbidden(field.NewPath("spec", "ipv4"), msg))
		}
	}
	return allErrs
}

// ValidateHardwareStatusUpdate validates a write to Hardware's status subresource.
func ValidateHardwareStatusUpdate(hw, old *stargate.Hardware) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&hw.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	status := &hw.Status
	if status.State != "" && !hardwareStates.Has(status.State) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("state"), status.State, sets.List(hardwareStates)))
	}
	allErrs = append(allErrs, validateOptionalName(status.ActiveJob, fldPath.Child("activeJob"))...)
	allErrs = append(allErrs, validateOptionalName(status.LastJob, fldPath.Child("lastJob"))...)
	allErrs = append(allErrs, validateText(status.CurrentOS, fldPath.Child("currentOS"))...)
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(status.ObservedGeneration, fldPath.Child("observedGeneration"))...)
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))...)
	return allErrs
}

func validateHardwareSpec(spec *stargate.HardwareSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	switch normalized, ok := NormalizeMAC(spec.MAC); {
	case spec.MAC == "":
		allErrs = append(allErrs, field.Required(fldPath.Child("mac"), "the MAC address of the provisioning interface, e.g. aa:bb:cc:dd:ee:01"))
	case !ok:
		allErrs = append(allErrs, field.Invalid(fldPath.Child("mac"), spec.MAC, "must be a 48-bit MAC address, e.g. aa:bb:cc:dd:ee:01"))
	case normalized != spec.MAC:
		// Strategies normalise before validating, so this only trips when a
		// caller skipped them; refusing keeps one spelling in storage.
		allErrs = append(allErrs, field.Invalid(fldPath.Child("mac"), spec.MAC, "must be in lower-case colon form, e.g. "+normalized))
	}
	if spec.IPv4 == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("ipv4"), "the server's unicast IPv4 address, e.g. 10.0.1.5"))
	} else if msg := unicastIPv4Problem(spec.IPv4); msg != "" {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("ipv4"), spec.IPv4, msg))
	}
	allErrs = append(allErrs, validateText(spec.Inventory.SKU, fldPath.Child("inventory", "sku"))...)
	allErrs = append(allErrs, validateText(spec.Inventory.Location, fldPath.Child("inventory", "location"))...)
	if spec.BMC != nil {
		addrPath := fldPath.Child("bmc", "address")
		if spec.BMC.Address == "" {
			allErrs = append(allErrs, field.Required(addrPath, "a host name or IP address, optionally with :port"))
		} else if msg := hostPortProblem(spec.BMC.Address); msg != "" {
			allErrs = append(allErrs, field.Invalid(addrPath, spec.BMC.Address, msg))
		}
	}
	return allErrs
}

func unicastIPv4Problem(s string) string {
	addr, err := netip.ParseAddr(s)
	switch {
	case err != nil || !addr.Is4():
		return "must be an IPv4 address in dotted-quad form, e.g. 10.0.1.5"
	case addr.IsUnspecified(), addr.IsMulticast(), addr == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return "must be a unicast address (not 0.0.0.0, multicast or broadcast)"
	}
	return ""
}

func hostPortProblem(s string) string {
	host := s
	if h, port, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(port)
		if err != nil {
			return "port must be a number"
		}
		if errs := validation.IsValidPortNum(n); len(errs) > 0 {
			return "port " + strings.Join(errs, "; ")
		}
		host = h
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if errs := validation.IsDNS1123Subdomain(host); len(errs) > 0 {
		return "must be an IP address or DNS name, optionally with :port"
	}
	return ""
}

// ValidateTemplate validates a new Template.
func ValidateTemplate(t *stargate.Template) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&t.ObjectMeta, true,
		apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateTemplateSpec(&t.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateTemplateUpdate validates an update of a Template. Templates are
// mutable: Jobs copy what they used into status.template when they start.
func ValidateTemplateUpdate(t, old *stargate.Template) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&t.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateTemplateSpec(&t.Spec, field.NewPath("spec"))...)
	return allErrs
}

func validateTemplateSpec(spec *stargate.TemplateSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if spec.OSVersion == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("osVersion"), "the version the server reports once installed, e.g. 2.0.0"))
	} else if strings.ContainsAny(spec.OSVersion, " \t\r\n") {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("osVersion"), spec.OSVersion, "must not contain white space"))
	}
	allErrs = append(allErrs, validateText(spec.OSVersion, fldPath.Child("osVersion"))...)
	if spec.OSImage == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("osImage"), "the https:// URL of the OS image"))
	} else if msg := urlProblem(spec.OSImage); msg != "" {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("osImage"), spec.OSImage, msg))
	}
	if spec.Checksum != "" && !checksumPattern.MatchString(spec.Checksum) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("checksum"), spec.Checksum, "must be sha256: followed by 64 lower-case hex digits"))
	}
	if spec.CloudInit != nil && len(spec.CloudInit.UserData) > MaxUserDataBytes {
		// The value itself is never echoed: it may hold join tokens.
		allErrs = append(allErrs, field.TooLong(fldPath.Child("cloudInit", "userData"), "", MaxUserDataBytes))
	}
	return allErrs
}

// InsecureImageWarning is the warning for a Template whose image is fetched
// over plain http, or "".
func InsecureImageWarning(fldPath *field.Path, raw string) string {
	if u, err := url.Parse(raw); err == nil && u.Scheme == "http" {
		return fmt.Sprintf("%s: %s is plain http: the image can be altered in transit; prefer https", fldPath, raw)
	}
	return ""
}

// InsecureEndpointWarning is the warning for a datacenter API reached over
// plain http on another machine, where its bearer token would cross the
// network in clear text, or "". Loopback (a local mockdc) is not warned about.
func InsecureEndpointWarning(fldPath *field.Path, raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "http" {
		return ""
	}
	if host := u.Hostname(); host == "localhost" || net.ParseIP(host) != nil && net.ParseIP(host).IsLoopback() {
		return ""
	}
	return fmt.Sprintf("%s: %s is plain http: the datacenter token would cross the network in clear text; prefer https", fldPath, raw)
}

// urlProblem accepts absolute http and https URLs with a host and no embedded
// credentials (those belong in files, never in API fields).
func urlProblem(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "must be a URL: " + err.Error()
	case u.Scheme != "https" && u.Scheme != "http":
		return "must be an https:// (or http://) URL"
	case u.Host == "":
		return "must name a host"
	case u.User != nil:
		return "must not embed credentials"
	}
	return ""
}

// ValidateJob validates a new Job.
func ValidateJob(job *stargate.Job) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&job.ObjectMeta, true,
		apimachineryvalidation.NameIsDNSSubdomain, field.NewPath("metadata"))
	allErrs = append(allErrs, validateJobSpec(&job.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateJobUpdate validates an update of a Job: the spec is immutable but
// for spec.cancel, which may only go from false to true.
func ValidateJobUpdate(job, old *stargate.Job) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&job.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("spec")
	allErrs = append(allErrs, validateJobSpec(&job.Spec, fldPath)...)
	if old.Spec.Cancel && !job.Spec.Cancel {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("cancel"), "a cancelled Job cannot be resumed; create a new Job"))
	}
	newSpec, oldSpec := job.Spec, old.Spec
	newSpec.Cancel, oldSpec.Cancel = false, false
	if !apiequality.Semantic.DeepEqual(newSpec, oldSpec) {
		allErrs = append(allErrs, field.Invalid(fldPath, "<spec>",
			"a Job's spec is immutable except spec.cancel; cancel it and create a new Job instead").WithOrigin("immutable"))
	}
	return allErrs
}

// ValidateJobStatusUpdate validates a write to a Job's status subresource.
func ValidateJobStatusUpdate(job, old *stargate.Job) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&job.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	status := &job.Status
	if status.Phase != "" && !jobPhases.Has(status.Phase) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("phase"), status.Phase, sets.List(jobPhases)))
	}
	if IsFinished(old.Status.Phase) && status.Phase != old.Status.Phase {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("phase"),
			fmt.Sprintf("the Job already finished as %s; a finished Job cannot change phase", old.Status.Phase)))
	}
	if old.Status.Phase == stargate.JobRunning && status.Phase == stargate.JobPending {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("phase"),
			"a Running Job never goes back to Pending: it runs at its datacenter until it finishes"))
	}
	// A request, once fixed, never changes; it may only be given back whole by
	// a Job that never reached its datacenter (status.dcJobID empty, Pending),
	// once the datacenter said nothing runs under its key.
	unclaimed := status.Submission == nil && status.DCJobID == "" && status.Phase == stargate.JobPending
	if old.Status.Submission != nil && !unclaimed && !apiequality.Semantic.DeepEqual(status.Submission, old.Status.Submission) {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("submission"),
			"the request sent to the datacenter is fixed at the first attempt").WithOrigin("immutable"))
	}
	if old.Status.DCJobID != "" && status.DCJobID != old.Status.DCJobID {
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("dcJobID"),
			"a Job follows one datacenter job; its ID cannot change").WithOrigin("immutable"))
	}
	if s := status.Submission; s != nil {
		subPath := fldPath.Child("submission")
		allErrs = append(allErrs, validateText(s.MAC, subPath.Child("mac"))...)
		allErrs = append(allErrs, validateText(s.IPv4, subPath.Child("ipv4"))...)
		allErrs = append(allErrs, validateText(s.UserDataSHA256, subPath.Child("userDataSHA256"))...)
	}
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(status.Attempts), fldPath.Child("attempts"))...)
	if len(status.Message) > maxMessageLength {
		allErrs = append(allErrs, field.TooLong(fldPath.Child("message"), "", maxMessageLength))
	}
	allErrs = append(allErrs, validateText(status.DCJobID, fldPath.Child("dcJobID"))...)
	allErrs = append(allErrs, validateText(status.CurrentOS, fldPath.Child("currentOS"))...)
	if status.StartTime != nil && status.CompletionTime != nil && status.CompletionTime.Before(status.StartTime) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("completionTime"), status.CompletionTime, "must not be before startTime"))
	}
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))...)
	return allErrs
}

// IsFinished reports whether phase is terminal.
func IsFinished(phase stargate.JobPhase) bool {
	return phase == stargate.JobSucceeded || phase == stargate.JobFailed
}

func validateJobSpec(spec *stargate.JobSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	hwPath := fldPath.Child("hardwareRef", "name")
	if spec.HardwareRef.Name == "" {
		allErrs = append(allErrs, field.Required(hwPath, "the Hardware, in this namespace, to operate on"))
	} else {
		allErrs = append(allErrs, validateOptionalName(spec.HardwareRef.Name, hwPath)...)
	}
	allErrs = append(allErrs, validateOperationAndTemplate(spec.Operation, spec.TemplateRef, fldPath)...)
	allErrs = append(allErrs, validateJobLimits(spec.BackoffLimit, spec.ActiveDeadlineSeconds, spec.TTLSecondsAfterFinished, fldPath)...)
	return allErrs
}

// validateOperationAndTemplate checks spec.operation and spec.templateRef of
// a Job or a Campaign: a repave names the Template to install, the other
// operations name none.
func validateOperationAndTemplate(op stargate.Operation, templateRef *stargate.LocalObjectReference, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	opPath := fldPath.Child("operation")
	switch {
	case op == "":
		allErrs = append(allErrs, field.Required(opPath, "one of "+strings.Join(operationNames(), ", ")))
	case !operations.Has(op):
		allErrs = append(allErrs, field.NotSupported(opPath, op, operationNames()))
	}
	tmplPath := fldPath.Child("templateRef")
	switch {
	case op == stargate.OperationRepave && (templateRef == nil || templateRef.Name == ""):
		allErrs = append(allErrs, field.Required(tmplPath.Child("name"), "a repave needs the Template to install"))
	case op == stargate.OperationRepave:
		allErrs = append(allErrs, validateOptionalName(templateRef.Name, tmplPath.Child("name"))...)
	case templateRef != nil && operations.Has(op):
		allErrs = append(allErrs, field.Forbidden(tmplPath, fmt.Sprintf("only a repave installs a Template, not %s", op)))
	}
	return allErrs
}

// validateJobLimits checks the limits a Job has, and a Campaign passes to its
// Jobs, under fldPath.
func validateJobLimits(backoffLimit *int32, activeDeadlineSeconds *int64, ttlSecondsAfterFinished *int32, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if backoffLimit != nil && (*backoffLimit < 0 || *backoffLimit > maxBackoffLimit) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("backoffLimit"), *backoffLimit,
			fmt.Sprintf("must be between 0 and %d", maxBackoffLimit)))
	}
	if activeDeadlineSeconds != nil && *activeDeadlineSeconds <= 0 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("activeDeadlineSeconds"), *activeDeadlineSeconds, "must be greater than 0"))
	}
	if ttlSecondsAfterFinished != nil {
		allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(*ttlSecondsAfterFinished), fldPath.Child("ttlSecondsAfterFinished"))...)
	}
	return allErrs
}

func operationNames() []string {
	names := make([]string, 0, operations.Len())
	for _, op := range sets.List(operations) {
		names = append(names, string(op))
	}
	return names
}

// ValidateDatacenter validates a new Datacenter. Its name is a DNS-1123 label
// because it names the namespace it governs.
func ValidateDatacenter(dc *stargate.Datacenter) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMeta(&dc.ObjectMeta, false,
		apimachineryvalidation.ValidateNamespaceName, field.NewPath("metadata"))
	allErrs = append(allErrs, validateDatacenterSpec(&dc.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateDatacenterUpdate validates an update of a Datacenter.
func ValidateDatacenterUpdate(dc, old *stargate.Datacenter) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&dc.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, validateDatacenterSpec(&dc.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateDatacenterStatusUpdate validates a write to a Datacenter's status subresource.
func ValidateDatacenterStatusUpdate(dc, old *stargate.Datacenter) field.ErrorList {
	allErrs := apimachineryvalidation.ValidateObjectMetaUpdate(&dc.ObjectMeta, &old.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	allErrs = append(allErrs, apimachineryvalidation.ValidateNonnegativeField(int64(dc.Status.ActiveJobs), fldPath.Child("activeJobs"))...)
	allErrs = append(allErrs, metav1validation.ValidateConditions(dc.Status.Conditions, fldPath.Child("conditions"))...)
	return allErrs
}

func validateDatacenterSpec(spec *stargate.DatacenterSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if spec.Endpoint == "" {
		allErrs = append(allErrs, field.Required(fldPath.Child("endpoint"), "the http(s):// base URL of the datacenter API"))
	} else if msg := urlProblem(spec.Endpoint); msg != "" {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("endpoint"), spec.Endpoint, msg))
	}
	if spec.MaxConcurrentJobs != nil && *spec.MaxConcurrentJobs < 1 {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("maxConcurrentJobs"), *spec.MaxConcurrentJobs,
			"must be at least 1; set spec.paused to stop new Jobs"))
	}
	return allErrs
}

func validateOptionalName(name string, fldPath *field.Path) field.ErrorList {
	if name == "" {
		return nil
	}
	var allErrs field.ErrorList
	for _, msg := range apimachineryvalidation.NameIsDNSSubdomain(name, false) {
		allErrs = append(allErrs, field.Invalid(fldPath, name, msg))
	}
	return allErrs
}

func validateText(s string, fldPath *field.Path) field.ErrorList {
	if len(s) > MaxTextLength {
		return field.ErrorList{field.TooLong(fldPath, "", MaxTextLength)}
	}
	return nil
}

// ValidateRepaveRequest validates the body of POST .../hardwares/NAME/repave.
// Its spec fields become the repave Job's, under the same paths, so the Job
// spec rules are applied as they will be to the Job.
func ValidateRepaveRequest(req *stargate.RepaveRequest, hardwareName string) field.ErrorList {
	spec := RepaveJobSpec(req, hardwareName)
	return validateJobSpec(&spec, field.NewPath("spec"))
}

// RepaveJobSpec is the spec of the Job a RepaveRequest creates.
func RepaveJobSpec(req *stargate.RepaveRequest, hardwareName string) stargate.JobSpec {
	templateRef := req.Spec.TemplateRef
	return stargate.JobSpec{
		HardwareRef:             stargate.LocalObjectReference{Name: hardwareName},
		Operation:               stargate.OperationRepave,
		TemplateRef:             &templateRef,
		BackoffLimit:            req.Spec.BackoffLimit,
		ActiveDeadlineSeconds:   req.Spec.ActiveDeadlineSeconds,
		TTLSecondsAfterFinished: req.Spec.TTLSecondsAfterFinished,
	}
}
