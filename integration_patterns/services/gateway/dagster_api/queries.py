"""The GraphQL documents the gateway sends to the Dagster webserver.

Each names only the fields the gateway maps (see ``results.py``) and lists the error types
Dagster may answer with, so a refusal is a typed result rather than a GraphQL error.
Launches and cancels are not here: dagster-graphql's client sends those.
"""

RUN_FIELDS = """
fragment GatewayRunFields on Run {
  runId jobName status creationTime startTime endTime
  tags { key value }
  repositoryOrigin { repositoryLocationName }
}
"""

QUEUING_QUERY = "query GatewayInstance { instance { runQueuingSupported } }"

JOBS_QUERY = """
query GatewayJobs {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection {
      nodes { name location { name } jobs { name description } }
    }
    ... on PythonError { message }
  }
}
"""

RUN_QUERY = (
    """
query GatewayRun($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { ...GatewayRunFields }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""
    + RUN_FIELDS
)

RUNS_BY_TAG_QUERY = (
    """
query GatewayRunsByTag($filter: RunsFilter!) {
  runsOrError(filter: $filter, limit: 1) {
    __typename
    ... on Runs { results { ...GatewayRunFields } }
    ... on InvalidPipelineRunsFilterError { message }
    ... on PythonError { message }
  }
}
"""
    + RUN_FIELDS
)

METADATA_FIELDS = """
fragment GatewayMetadata on MetadataEntry {
  __typename label
  ... on TextMetadataEntry { text }
  ... on IntMetadataEntry { intValue intRepr }
  ... on FloatMetadataEntry { floatValue floatRepr }
  ... on BoolMetadataEntry { boolValue }
  ... on JsonMetadataEntry { jsonString }
  ... on MarkdownMetadataEntry { mdStr }
  ... on PathMetadataEntry { path }
  ... on NotebookMetadataEntry { path }
  ... on UrlMetadataEntry { url }
  ... on TimestampMetadataEntry { timestamp }
  ... on PipelineRunMetadataEntry { runId }
  ... on AssetMetadataEntry { assetKey { path } }
  ... on JobMetadataEntry { jobName }
  ... on PoolMetadataEntry { pool }
  ... on PythonArtifactMetadataEntry { module name }
  ... on TableSchemaMetadataEntry { schema { columns { name type description } } }
  ... on TableMetadataEntry { table { records } }
}
"""

EVENTS_QUERY = (
    """
query GatewayRunEvents($runId: ID!, $cursor: String, $limit: Int) {
  logsForRun(runId: $runId, afterCursor: $cursor, limit: $limit) {
    __typename
    ... on EventConnection {
      cursor hasMore
      events {
        __typename
        ... on MaterializationEvent {
          stepKey partition assetKey { path } metadataEntries { ...GatewayMetadata }
        }
        ... on AssetCheckEvaluationEvent {
          stepKey
          evaluation {
            checkName success severity partition description assetKey { path }
            metadataEntries { ...GatewayMetadata }
          }
        }
        ... on ExecutionStepFailureEvent {
          stepKey error { message errorChain { error { message } } }
        }
      }
    }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
  }
}
"""
    + METADATA_FIELDS
)


PARTITION_KEYS_QUERY = """
query GatewayPartitionKeys($selector: PipelineSelector!) {
  pipelineOrError(params: $selector) {
    __typename
    ... on Pipeline { partitionKeysOrError { partitionKeys } }
    ... on PipelineNotFoundError { message }
    ... on PythonError { message }
  }
}
"""

LAUNCH_BACKFILL_MUTATION = """
mutation GatewayBackfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on PartitionKeysNotFoundError { message }
    ... on UnauthorizedError { message }
    ... on RunConfigValidationInvalid { errors { message reason } }
  }
}
"""

BACKFILL_QUERY = """
query GatewayBackfillStatus($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      id status partitionNames partitionSetName
      partitionSet { pipelineName repositoryOrigin { repositoryLocationName } }
      runs { runId status tags { key value } }
    }
    ... on BackfillNotFoundError { message }
    ... on PythonError { message }
  }
}
"""
