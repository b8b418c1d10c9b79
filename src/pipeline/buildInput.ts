/** What a build was asked to do. */
export interface BuildInput {
  taskId: string;
  commitSha: string;
  branchName: string;
  repositoryUrl: string;
  attempt: number;
}
