package campaign

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/apiserver/pkg/util/dryrun"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	planning "stargate.io/stargate/pkg/campaign"
	registry "stargate.io/stargate/pkg/registry/stargate"
)

var (
	_ rest.StandardStorage        = &PlanningREST{}
	_ rest.ShortNamesProvider     = &PlanningREST{}
	_ rest.CategoriesProvider     = &PlanningREST{}
	_ rest.StorageWithReadiness   = &PlanningREST{}
	_ rest.SingularNameProvider   = &PlanningREST{}
	_ rest.ResetFieldsStrategy    = &PlanningREST{}
	_ rest.TableConvertor         = &PlanningREST{}
	_ rest.StorageVersionProvider = &PlanningREST{}
)

// hardwarePage is how many Hardware a dry run reads at once: a Campaign over
// 100,000 servers is planned from pages, never from one huge list.
const hardwarePage = 1000

// PlanningREST is the campaigns resource: the Campaign store, whose
// server-side dry-run creates answer with the plan the Campaign would start
// with (status.plan, counts and datacenters), computed from the Datacenters,
// Templates and Hardware as they are now. Other requests are the store's;
// a real create leaves the members to the controller, which fixes them when
// the Campaign starts.
type PlanningREST struct {
	*registry.REST
	datacenters rest.Lister
	templates   rest.Getter
	hardware    rest.Lister
	pageSize    int64
}

// NewPlanningREST wraps the Campaign REST; datacenters, templates and
// hardware are the stores of those kinds, read with the request's context.
func NewPlanningREST(campaigns *registry.REST, datacenters rest.Lister, templates rest.Getter, hardware rest.Lister) *PlanningREST {
	return &PlanningREST{REST: campaigns, datacenters: datacenters, templates: templates, hardware: hardware, pageSize: hardwarePage}
}

// Create creates the Campaign; a dry run (after validation and admission,
// which the store runs) also fills the answer's status with the plan.
func (r *PlanningREST) Create(ctx context.Context, obj runtime.Object, createValidation rest.ValidateObjectFunc, options *metav1.CreateOptions) (runtime.Object, error) {
	out, err := r.REST.Create(ctx, obj, createValidation, options)
	if err != nil || options == nil || !dryrun.IsDryRun(options.DryRun) {
		return out, err
	}
	c, ok := out.(*stargate.Campaign)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("the Campaign store answered a %T", out))
	}
	if err := r.plan(ctx, c); err != nil {
		return nil, err
	}
	return c, nil
}

// plan fills c's status with the plan it would start with now. A selected
// datacenter without the Template would hold the start: it is named in a
// Validated=False condition and its Hardware are left out of the plan.
func (r *PlanningREST) plan(ctx context.Context, c *stargate.Campaign) error {
	dcs, err := r.selectedDatacenters(ctx, c.Spec.DatacenterSelector)
	if err != nil {
		return err
	}
	osVersion, missing, err := r.templateVersions(ctx, c, dcs)
	if err != nil {
		return err
	}
	var candidates []planning.Candidate
	for _, dc := range dcs {
		if slices.Contains(missing, dc) {
			continue
		}
		if candidates, err = r.appendCandidates(ctx, candidates, dc, c.Spec.HardwareSelector); err != nil {
			return err
		}
	}

	var spec v1alpha1.CampaignSpec
	if err := v1alpha1.Convert_stargate_CampaignSpec_To_v1alpha1_CampaignSpec(&c.Spec, &spec, nil); err != nil {
		return apierrors.NewInternalError(err)
	}
	var status v1alpha1.CampaignStatus
	plan := planning.NewPlan(&spec, candidates, osVersion)
	status.Plan, status.Counts, status.Datacenters = plan.Status()
	status.Waves = plan.Waves()
	status.Phase = v1alpha1.CampaignPending
	status.ObservedGeneration = c.Generation
	meta.SetStatusCondition(&status.Conditions, validated(c, status.Counts, len(dcs), missing))
	return v1alpha1.Convert_v1alpha1_CampaignStatus_To_stargate_CampaignStatus(&status, &c.Status, nil)
}

// validated is the Validated condition of a dry run's answer.
func validated(c *stargate.Campaign, counts v1alpha1.CampaignCounts, datacenters int, missing []string) metav1.Condition {
	cond := metav1.Condition{
		Type: v1alpha1.CampaignConditionValidated, Status: metav1.ConditionTrue, Reason: "DryRun",
		ObservedGeneration: c.Generation, LastTransitionTime: metav1.NewTime(time.Now().Truncate(time.Second)),
		Message: fmt.Sprintf("dry run: %d members in %d datacenter(s), %d already up to date; the members are fixed when the Campaign starts",
			counts.Targets-counts.Skipped, datacenters, counts.Skipped),
	}
	if len(missing) > 0 {
		cond.Status, cond.Reason = metav1.ConditionFalse, "TemplateNotFound"
		cond.Message = fmt.Sprintf("Template %q does not exist in selected datacenter(s) %s: the Campaign would not start; "+
			"create it there, or narrow spec.datacenterSelector (the plan leaves their Hardware out)",
			c.Spec.TemplateRef.Name, strings.Join(missing, ", "))
	}
	return cond
}

// selectedDatacenters lists the names of the Datacenters the selector
// selects, every Datacenter when it is nil.
func (r *PlanningREST) selectedDatacenters(ctx context.Context, selector *metav1.LabelSelector) ([]string, error) {
	sel, err := asSelector(selector, "spec.datacenterSelector")
	if err != nil {
		return nil, err
	}
	ctx = genericapirequest.WithNamespace(ctx, metav1.NamespaceNone)
	obj, err := r.datacenters.List(ctx, &metainternalversion.ListOptions{LabelSelector: sel})
	if err != nil {
		return nil, err
	}
	list, ok := obj.(*stargate.DatacenterList)
	if !ok {
		return nil, apierrors.NewInternalError(fmt.Errorf("the Datacenter store listed a %T", obj))
	}
	names := make([]string, 0, len(list.Items))
	for _, dc := range list.Items {
		names = append(names, dc.Name)
	}
	return names, nil
}

// templateVersions reads the repave's Template in each datacenter: its
// osVersion there, and the datacenters that lack it. Other operations
// have no Template.
func (r *PlanningREST) templateVersions(ctx context.Context, c *stargate.Campaign, dcs []string) (map[string]string, []string, error) {
	osVersion := map[string]string{}
	if c.Spec.Operation != stargate.OperationRepave || c.Spec.TemplateRef == nil {
		return osVersion, nil, nil
	}
	var missing []string
	for _, dc := range dcs {
		obj, err := r.templates.Get(genericapirequest.WithNamespace(ctx, dc), c.Spec.TemplateRef.Name, &metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			missing = append(missing, dc)
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		tmpl, ok := obj.(*stargate.Template)
		if !ok {
			return nil, nil, apierrors.NewInternalError(fmt.Errorf("the Template store answered a %T", obj))
		}
		osVersion[dc] = tmpl.Spec.OSVersion
	}
	return osVersion, missing, nil
}

// appendCandidates appends the Hardware of datacenter dc that the selector
// selects, read page by page.
func (r *PlanningREST) appendCandidates(ctx context.Context, out []planning.Candidate, dc string, selector *metav1.LabelSelector) ([]planning.Candidate, error) {
	sel, err := asSelector(selector, "spec.hardwareSelector")
	if err != nil {
		return nil, err
	}
	ctx = genericapirequest.WithNamespace(ctx, dc)
	opts := &metainternalversion.ListOptions{LabelSelector: sel, Limit: r.pageSize}
	for {
		obj, err := r.hardware.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		list, ok := obj.(*stargate.HardwareList)
		if !ok {
			return nil, apierrors.NewInternalError(fmt.Errorf("the Hardware store listed a %T", obj))
		}
		for i := range list.Items {
			hw := &list.Items[i]
			out = append(out, planning.Candidate{Datacenter: dc, Name: hw.Name, Labels: hw.Labels, CurrentOS: hw.Status.CurrentOS})
		}
		if list.Continue == "" {
			return out, nil
		}
		opts.Continue = list.Continue
	}
}

// asSelector is a Campaign's selector as labels: nil selects everything.
func asSelector(selector *metav1.LabelSelector, field string) (labels.Selector, error) {
	if selector == nil {
		return labels.Everything(), nil
	}
	sel, err := metav1.LabelSelectorAsSelector(selector)
	if err != nil {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%s: %v", field, err))
	}
	return sel, nil
}
