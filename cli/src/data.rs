//! The data commands: `put`, `get`, `delete` and `cart`, each one client request (a delete
//! without a context reads first) and what it printed.
//!
//! This module must not know how nodes coordinate: it calls the client and prints.

use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use dynamo_client::sets::SetOp;
use dynamo_protocol::RequestOptions;

use crate::args::{CartCommand, DeleteArgs, GetArgs, PutArgs};
use crate::print::{print_get, print_set, shown, write_exact};
use crate::read_value;

/// `dynamo put`: writes a value, with the context of the read it follows if given.
pub(crate) async fn put(args: PutArgs) -> Result<ExitCode> {
    let PutArgs {
        bucket,
        key,
        value,
        file,
        context,
        w,
        pw,
        connection,
    } = args;
    let value = match (value, file) {
        (Some(value), _) => value.into_bytes(),
        (None, Some(file)) => read_value(&file)?,
        (None, None) => bail!("give a VALUE or --file"),
    };
    let options = RequestOptions {
        w,
        pw,
        timeout_ms: Some(connection.timeout_ms),
        ..RequestOptions::default()
    };
    let reply = connection
        .client()?
        .put(&bucket, key.as_bytes(), value, context, options)
        .await
        .with_context(|| format!("put {bucket}/{}", shown(&key)))?;
    if connection.json {
        outln!(
            "{}",
            serde_json::json!({"context": reply.context, "acknowledged": reply.acknowledged, "warnings": reply.warnings})
        );
    } else {
        outln!("ok ({} acknowledgements)", reply.acknowledged);
        outln!("context: {}", reply.context);
        for warning in &reply.warnings {
            outln!("warning: {warning}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynamo get`: every sibling and the context, or the exact bytes of the one value.
pub(crate) async fn get(args: GetArgs) -> Result<ExitCode> {
    let GetArgs {
        bucket,
        key,
        r,
        pr,
        raw,
        output,
        connection,
    } = args;
    let options = RequestOptions {
        r,
        pr,
        timeout_ms: Some(connection.timeout_ms),
        ..RequestOptions::default()
    };
    let outcome = connection
        .client()?
        .get(&bucket, key.as_bytes(), options)
        .await
        .with_context(|| format!("get {bucket}/{}", shown(&key)))?;
    if raw || output.is_some() {
        return write_exact(&outcome, output.as_deref());
    }
    Ok(print_get(&outcome, connection.json))
}

/// `dynamo delete`: a tombstone over what the context (or a first read) saw.
pub(crate) async fn delete(args: DeleteArgs) -> Result<ExitCode> {
    let DeleteArgs {
        bucket,
        key,
        context,
        r,
        w,
        connection,
    } = args;
    let options = RequestOptions {
        r,
        w,
        timeout_ms: Some(connection.timeout_ms),
        ..RequestOptions::default()
    };
    let reply = connection
        .client()?
        .delete(&bucket, key.as_bytes(), context, options)
        .await
        .with_context(|| format!("delete {bucket}/{}", shown(&key)))?;
    if connection.json {
        outln!(
            "{}",
            serde_json::json!({"context": reply.context, "acknowledged": reply.acknowledged})
        );
    } else {
        outln!("deleted ({} acknowledgements)", reply.acknowledged);
    }
    Ok(ExitCode::SUCCESS)
}

/// `dynamo cart add|remove|show`: a typed set operation (read, apply, write with the context).
pub(crate) async fn cart(command: CartCommand) -> Result<ExitCode> {
    let (bucket, key, op, connection) = match command {
        CartCommand::Add(i) => (
            i.bucket,
            i.key,
            Some(SetOp::Add(i.item.into())),
            i.connection,
        ),
        CartCommand::Remove(i) => (
            i.bucket,
            i.key,
            Some(SetOp::Remove(i.item.into())),
            i.connection,
        ),
        CartCommand::Show {
            bucket,
            key,
            connection,
        } => (bucket, key, None, connection),
    };
    let options = RequestOptions {
        timeout_ms: Some(connection.timeout_ms),
        ..RequestOptions::default()
    };
    let view = connection
        .client()?
        .update_set(&bucket, key.as_bytes(), op.clone(), options)
        .await
        .with_context(|| format!("cart {bucket}/{}", shown(&key)))?;
    print_set(&view, op.as_ref(), connection.json);
    Ok(ExitCode::SUCCESS)
}
