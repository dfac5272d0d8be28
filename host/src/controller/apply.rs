//! The writing end of a reconcile: the plan's writes, carried out in order, as they
//! are. It decides nothing and reads nothing; it stops at the first write that fails.

use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;

use super::error::Error;
use super::write::{Target, Write};

/// Who writes: the field manager of Sluice's patches.
pub const MANAGER: &str = "sluice";

/// Makes `writes`, in order, stopping at the first that fails.
pub async fn apply(client: &kube::Client, writes: &[Write]) -> Result<(), Error> {
    for write in writes {
        apply_one(client, write)
            .await
            .map_err(|source| Error::Apply {
                write: write.describe(),
                source,
            })?;
    }
    Ok(())
}

fn api(client: &kube::Client, target: &Target) -> Api<DynamicObject> {
    let resource = crate::workload::resource_of(&target.api_version, &target.kind);
    Api::namespaced_with(client.clone(), &target.namespace, &resource)
}

async fn apply_one(client: &kube::Client, write: &Write) -> Result<(), kube::Error> {
    match write {
        Write::Create { target, object } => {
            let object: DynamicObject =
                serde_json::from_value(object.clone()).map_err(kube::Error::SerdeError)?;
            match api(client, target)
                .create(&PostParams::default(), &object)
                .await
            {
                // Its name is fixed: it is there from an earlier create whose answer
                // was lost, or from a reconcile that raced this one.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Write::Patch {
            target,
            patch,
            missing_ok,
        } => {
            let params = PatchParams {
                field_manager: Some(MANAGER.into()),
                ..PatchParams::default()
            };
            match api(client, target)
                .patch(&target.name, &params, &Patch::Merge(patch))
                .await
            {
                Err(kube::Error::Api(e)) if e.code == 404 && *missing_ok => Ok(()),
                other => other.map(|_| ()),
            }
        }
        Write::Delete { target, background } => {
            let params = if *background {
                DeleteParams::background()
            } else {
                DeleteParams::default()
            };
            match api(client, target).delete(&target.name, &params).await {
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                other => other.map(|_| ()),
            }
        }
    }
}
