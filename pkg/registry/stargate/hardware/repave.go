package hardware

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/admission"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/util/dryrun"
	"k8s.io/utils/ptr"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/apis/stargate/validation"
)

var (
	_ rest.NamedCreater             = &RepaveREST{}
	_ rest.SingularNameProvider     = &RepaveREST{}
	_ rest.Scoper                   = &RepaveREST{}
	_ rest.StorageMetadata          = &RepaveREST{}
	_ rest.GroupVersionKindProvider = &RepaveREST{}
)

// HardwareLabel is set on every Job created through /repave: `kubectl get
// jobs.stargate.io -l stargate.io/hardware=server-001` lists a server's history.
const HardwareLabel = "stargate.io/hardware"

// JobStore is what /repave needs of the Job registry. The Job store's create
// path checks references and takes the Hardware's lock (package joblock), so
// a busy Hardware gets the same 409 here as through kubectl create.
type JobStore interface {
	rest.Creater
}

// RepaveREST serves POST .../hardwares/NAME/repave: it turns a RepaveRequest
// into the Hardware's repave Job and answers 201 with the RepaveRequest, its
// spec defaulted and status.job naming the Job made, as TokenRequest and
// Scale answer with their own kind. Typed clients decode the answer into the
// object they sent, so it must be that kind. Because it is its own
// subresource, RBAC can grant `create` on hardwares/repave without `update`
// on hardwares.
//
// Admission sees the request twice: the RepaveRequest, as a create of
// hardwares/repave (the generic handler does that), and then the Job, as a
// create of jobs, through the same mutating and validating chains and with
// the same attributes as a Job sent by `kubectl create`. So a policy on Jobs
// cannot be side-stepped through /repave.
type RepaveREST struct {
	hardware  rest.Getter
	templates rest.Getter
	jobs      JobStore
	admit     admission.Interface
	objects   admission.ObjectInterfaces
}

// NewRepaveREST returns the /repave subresource over the three registries it
// touches. admit is the server's admission chain (genericapiserver
// Config.AdmissionControl; nil admits everything) and objects what admission
// converts and defaults Jobs with (see ObjectInterfaces).
func NewRepaveREST(hardware, templates rest.Getter, jobs JobStore, admit admission.Interface, objects admission.ObjectInterfaces) *RepaveREST {
	return &RepaveREST{hardware: hardware, templates: templates, jobs: jobs, admit: admit, objects: objects}
}

// ObjectInterfaces is what the generic handlers give admission for the
// resources of scheme: the scheme itself to create, type, default and
// convert, and the server's registry of equivalent resources (genericapiserver
// Config.EquivalentResourceRegistry) for webhooks' matchPolicy.
func ObjectInterfaces(scheme *runtime.Scheme, equivalents runtime.EquivalentResourceMapper) admission.ObjectInterfaces {
	return &admission.RuntimeObjectInterfaces{ObjectCreater: scheme, ObjectTyper: scheme, ObjectDefaulter: scheme,
		ObjectConvertor: scheme, EquivalentResourceMapper: equivalents}
}

// New returns an empty RepaveRequest, the body this subresource decodes.
func (r *RepaveREST) New() runtime.Object { return &stargate.RepaveRequest{} }

// Destroy does nothing: the stores it uses are owned elsewhere.
func (r *RepaveREST) Destroy() {}

// NamespaceScoped is true: a Hardware lives in its datacenter's namespace.
func (r *RepaveREST) NamespaceScoped() bool { return true }

// GetSingularName names the subresource's body.
func (r *RepaveREST) GetSingularName() string { return "repaverequest" }

// ProducesMIMETypes is the default.
func (r *RepaveREST) ProducesMIMETypes(verb string) []string { return nil }

// ProducesObject tells OpenAPI the answer is a RepaveRequest.
func (r *RepaveREST) ProducesObject(verb string) interface{} { return v1alpha1.RepaveRequest{} }

// GroupVersionKind is the kind of the body, for discovery.
func (r *RepaveREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return v1alpha1.SchemeGroupVersion.WithKind("RepaveRequest")
}

// Create creates the repave Job of Hardware name and answers with the
// RepaveRequest: its spec as sent with defaults applied, and status.job the
// Job's name and UID. On a dry run nothing is stored: status.job.name is the
// name the store generated and status.job.uid is empty.
func (r *RepaveREST) Create(ctx context.Context, name string, obj runtime.Object,
	createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	req, ok := obj.(*stargate.RepaveRequest)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("the body of /repave must be a RepaveRequest, not %T", obj))
	}
	req = req.DeepCopy()
	req.Status = stargate.RepaveRequestStatus{} // a caller does not choose what was made
	if req.Spec.BackoffLimit == nil {
		req.Spec.BackoffLimit = ptr.To(v1alpha1.DefaultBackoffLimit) // as a Job's spec.backoffLimit
	}
	if errs := validation.ValidateRepaveRequest(req, name); len(errs) > 0 {
		return nil, apierrors.NewInvalid(stargate.Kind("RepaveRequest"), name, errs)
	}

	// /repave answers 404 for a missing Hardware or Template (a plain Job
	// create gets 422 on the field instead). Busy and being-deleted Hardware
	// get their 409 from the Job create path's lock.
	if _, err := r.hardware.Get(ctx, name, &metav1.GetOptions{}); err != nil {
		return nil, err // NotFound names the Hardware
	}
	if _, err := r.templates.Get(ctx, req.Spec.TemplateRef.Name, &metav1.GetOptions{}); apierrors.IsNotFound(err) {
		// The store qualifies errors with the request's resource (hardwares): say templates.
		return nil, apierrors.NewNotFound(stargate.Resource("templates"), req.Spec.TemplateRef.Name)
	} else if err != nil {
		return nil, err
	}
	// Admission sees the request itself, as for pods/eviction.
	if createValidation != nil {
		if err := createValidation(ctx, req.DeepCopyObject()); err != nil {
			return nil, err
		}
	}

	job := &stargate.Job{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: name + "-repave-",
			Namespace:    genericapirequest.NamespaceValue(ctx),
			Labels:       map[string]string{HardwareLabel: name},
		},
		Spec: validation.RepaveJobSpec(req, name),
	}
	created, err := r.createJob(ctx, job, options)
	if err != nil {
		return nil, err
	}
	made, ok := created.(*stargate.Job)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("the Job store answered %T, not a Job", created))
	}
	// The RepaveRequest is never stored: the managed fields the handler
	// recorded on it describe nothing a caller could later change.
	req.ManagedFields = nil
	req.Status.Job = &stargate.JobReference{Name: made.Name, UID: made.UID}
	if dryrun.IsDryRun(options.DryRun) {
		req.Status.Job.UID = "" // the store filled one in, but no Job has it
	}
	return req, nil
}

// createJob creates job as the Job create handler would: mutating admission
// first, then the store's create with validating admission (which the store
// runs on the finished object, after its own checks and the Hardware lock).
func (r *RepaveREST) createJob(ctx context.Context, job *stargate.Job, options *metav1.CreateOptions) (runtime.Object, error) {
	jobOptions := &metav1.CreateOptions{DryRun: options.DryRun, FieldManager: options.FieldManager, FieldValidation: options.FieldValidation}
	jobOptions.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("CreateOptions"))
	userInfo, _ := genericapirequest.UserFrom(ctx)
	attrs := admission.NewAttributesRecord(job, nil, v1alpha1.SchemeGroupVersion.WithKind("Job"), job.Namespace, job.Name,
		v1alpha1.SchemeGroupVersion.WithResource("jobs"), "", admission.Create, jobOptions, dryrun.IsDryRun(options.DryRun), userInfo)
	admit := admission.WithAudit(r.admit)
	if mutating, ok := admit.(admission.MutationInterface); ok && mutating.Handles(admission.Create) {
		if err := mutating.Admit(ctx, attrs, r.objects); err != nil {
			return nil, err
		}
	}
	return r.jobs.Create(ctx, job, rest.AdmissionToValidateObjectFunc(admit, attrs, r.objects), jobOptions)
}
