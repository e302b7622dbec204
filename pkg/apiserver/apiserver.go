// Package apiserver assembles the stargate.io API server: the scheme, the
// storage of every resource and subresource, and the post-start hooks.
package apiserver

import (
	"fmt"
	"net/http"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/utils/clock"

	"stargate.io/stargate/pkg/apis/stargate"
	"stargate.io/stargate/pkg/apis/stargate/install"
	"stargate.io/stargate/pkg/apis/stargate/v1alpha1"
	"stargate.io/stargate/pkg/controller/manager"
	"stargate.io/stargate/pkg/controller/metrics"
	"stargate.io/stargate/pkg/registry/stargate/campaign"
	"stargate.io/stargate/pkg/registry/stargate/datacenter"
	"stargate.io/stargate/pkg/registry/stargate/hardware"
	"stargate.io/stargate/pkg/registry/stargate/hwindex"
	"stargate.io/stargate/pkg/registry/stargate/job"
	"stargate.io/stargate/pkg/registry/stargate/joblock"
	"stargate.io/stargate/pkg/registry/stargate/template"
)

var (
	// Scheme knows every type the server decodes or encodes.
	Scheme = runtime.NewScheme()
	// Codecs serializes the types of Scheme.
	Codecs = serializer.NewCodecFactory(Scheme)
)

func init() {
	install.Install(Scheme)

	// The generic server decodes options (ListOptions, DeleteOptions...) as
	// metav1 types registered on an empty group at v1.
	metav1.AddToGroupVersion(Scheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	Scheme.AddUnversionedTypes(unversioned,
		&metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}

// ExtraConfig is Stargate's own configuration beyond the generic server's:
// the controllers' (whose EtcdClient and EtcdPrefix the Hardware identity
// index uses too), and whether to run them.
type ExtraConfig struct {
	manager.Config
	// Controllers runs the controllers in this process (--controllers).
	Controllers bool
}

// Config is the whole configuration of the server.
type Config struct {
	GenericConfig *genericapiserver.RecommendedConfig
	ExtraConfig   ExtraConfig
}

type completedConfig struct {
	GenericConfig genericapiserver.CompletedConfig
	ExtraConfig   *ExtraConfig
}

// CompletedConfig is a Config whose defaults have been filled in by Complete.
type CompletedConfig struct {
	*completedConfig
}

// StargateServer is the running API server.
type StargateServer struct {
	GenericAPIServer *genericapiserver.GenericAPIServer
}

// Complete fills in the defaults of the generic configuration.
func (cfg *Config) Complete() CompletedConfig {
	return CompletedConfig{&completedConfig{cfg.GenericConfig.Complete(), &cfg.ExtraConfig}}
}

// New builds the server from a completed configuration.
func (c CompletedConfig) New() (*StargateServer, error) {
	guard := &applyGuard{maxBody: c.GenericConfig.MaxRequestBodyBytes}
	if buildChain := c.GenericConfig.BuildHandlerChainFunc; buildChain != nil {
		// Inside the chain: the guard sees only authenticated, authorized requests.
		c.GenericConfig.BuildHandlerChainFunc = func(h http.Handler, cfg *genericapiserver.Config) http.Handler {
			return buildChain(guard.wrap(h), cfg)
		}
	}
	genericServer, err := c.GenericConfig.New("stargate-apiserver", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, err
	}
	s := &StargateServer{GenericAPIServer: genericServer}

	storage, err := c.storageMap()
	if err != nil {
		return nil, err
	}
	apiGroupInfo := genericapiserver.NewDefaultAPIGroupInfo(stargate.GroupName, Scheme, metav1.ParameterCodec, Codecs)
	apiGroupInfo.VersionedResourcesStorageMap[v1alpha1.SchemeGroupVersion.Version] = storage
	if err := s.GenericAPIServer.InstallAPIGroup(&apiGroupInfo); err != nil {
		return nil, err
	}
	// InstallAPIGroup built the group's OpenAPI models for the field manager.
	typeConverter, err := managedfields.NewTypeConverter(apiGroupInfo.StaticOpenAPISpec, false)
	if err != nil {
		return nil, err
	}
	guard.setSchema(typeConverter)
	metrics.Register()
	ready := newCachesReady(storage)
	if err := s.GenericAPIServer.AddReadyzChecks(ready); err != nil {
		return nil, err
	}
	if c.ExtraConfig.Controllers {
		if err := s.GenericAPIServer.AddPostStartHook("stargate-controllers", func(ctx genericapiserver.PostStartHookContext) error {
			return c.startControllers(ctx, ready)
		}); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// startControllers runs the controllers over the server's loopback client
// until the server stops (package manager).
func (c CompletedConfig) startControllers(hookCtx genericapiserver.PostStartHookContext, ready *cachesReady) error {
	cfg := c.ExtraConfig.Config
	cfg.Loopback, cfg.CachesSynced = hookCtx.LoopbackClientConfig, ready.running
	return manager.Start(hookCtx, cfg)
}

// storageMap wires every resource and subresource of v1alpha1.
func (c CompletedConfig) storageMap() (map[string]rest.Storage, error) {
	optsGetter := c.GenericConfig.RESTOptionsGetter
	// Hardware identities (MAC, IPv4) are unique through an index in etcd.
	index := hwindex.New(c.ExtraConfig.EtcdClient, c.ExtraConfig.EtcdPrefix, clock.RealClock{}, hwindex.DefaultGrace)
	hw, err := hardware.NewStorage(Scheme, optsGetter, index.Install)
	if err != nil {
		return nil, fmt.Errorf("hardwares: %w", err)
	}
	tmpl, err := template.NewREST(Scheme, optsGetter)
	if err != nil {
		return nil, fmt.Errorf("templates: %w", err)
	}
	// Jobs lock their Hardware and check their references in the Job create
	// path, so the guarantees hold for kubectl create and /repave alike.
	lock := joblock.New(hw.Status, tmpl, clock.RealClock{}, joblock.DefaultGrace)
	jobs, err := job.NewStorage(Scheme, optsGetter, lock.Install)
	if err != nil {
		return nil, fmt.Errorf("jobs: %w", err)
	}
	hw.Hardware.DeleteGuard = lock.HardwareDeletable
	tmpl.DeleteGuard = lock.TemplateDeletable
	dcs, err := datacenter.NewStorage(Scheme, optsGetter)
	if err != nil {
		return nil, fmt.Errorf("datacenters: %w", err)
	}
	dcs.Datacenter.DeleteGuard = lock.DatacenterDeletable
	dcs.Datacenter.BeginUpdate = lock.DatacenterUpdatable
	// A dry-run create of a Campaign answers with its plan, read from these stores.
	campaigns, err := campaign.NewStorage(Scheme, optsGetter)
	if err != nil {
		return nil, fmt.Errorf("campaigns: %w", err)
	}
	// /repave runs the Jobs it creates through the server's admission.
	repave := hardware.NewRepaveREST(hw.Hardware, tmpl, jobs.Job, c.GenericConfig.AdmissionControl,
		hardware.ObjectInterfaces(Scheme, c.GenericConfig.EquivalentResourceRegistry))
	return map[string]rest.Storage{
		"hardwares":          hw.Hardware,
		"hardwares/status":   hw.Status,
		"hardwares/repave":   repave,
		"templates":          tmpl,
		"jobs":               jobs.Job,
		"jobs/status":        jobs.Status,
		"datacenters":        dcs.Datacenter,
		"datacenters/status": dcs.Status,
		"campaigns":          campaign.NewPlanningREST(campaigns.Campaign, dcs.Datacenter, tmpl, hw.Hardware),
		"campaigns/status":   campaigns.Status,
	}, nil
}
