"""COCO-WholeBody 133 keypoint layout, OpenPose-18 mapping and body-region index sets."""

from __future__ import annotations

NUM_KEYPOINTS = 133

BODY = tuple(range(0, 17))
FEET = tuple(range(17, 23))
FACE = tuple(range(23, 91))
LEFT_HAND = tuple(range(91, 112))
RIGHT_HAND = tuple(range(112, 133))

BODY_NAMES = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 1, 2, 3, 4
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 5, 6, 7, 8, 9, 10
L_HIP, R_HIP = 11, 12

FACE_JAW = tuple(range(23, 40))
FACE_LIPS = tuple(range(71, 91))
OUTER_LIPS = tuple(range(71, 83))  # the 68-point face's 48..59: left corner, upper lip, right corner, lower lip
INNER_LIPS = tuple(range(83, 91))  # 60..67: left corner, upper inner lip (84-86), right corner, lower (88-90)
INNER_LIP_PAIRS = ((84, 90), (85, 89), (86, 88))  # (upper, lower) inner-lip points facing each other

# Points used for the rigid pose similarity of the global mask (paper Eq. 1): head and arms.
# Hips are left out on purpose: upper-body framing often crops them.
UPPER_BODY = tuple(range(0, 11))

# OpenPose-18 body order as written by DWPose wrappers in POSE_KEYPOINT:
# 0 nose, 1 neck, 2 r_sho, 3 r_elb, 4 r_wri, 5 l_sho, 6 l_elb, 7 l_wri, 8 r_hip, 9 r_knee,
# 10 r_ank, 11 l_hip, 12 l_knee, 13 l_ank, 14 r_eye, 15 l_eye, 16 r_ear, 17 l_ear.
# Entry i is the WholeBody index of OpenPose point i; None is the neck (no WholeBody point).
OPENPOSE18_FROM_WHOLEBODY = (0, None, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)
OPENPOSE_NECK = 1

# Region labels on the token grid. 0 is background (attends across frames to nothing).
BACKGROUND = 0
REGION_FACE = 1
REGION_HANDS = 2
REGION_ARMS = 3
REGION_BODY = 4
REGION_NAMES = {BACKGROUND: "background", REGION_FACE: "face", REGION_HANDS: "hands",
                REGION_ARMS: "arms", REGION_BODY: "body"}
REGION_IDS = {name: rid for rid, name in REGION_NAMES.items()}
NUM_REGION_LABELS = len(REGION_NAMES)
ALL_REGIONS = ("face", "hands", "arms", "body")

# When masks overlap a token takes the label that comes first here: hands usually occlude
# the face or torso they pass in front of, and the face sits on top of the shoulders.
REGION_PRIORITY = (REGION_HANDS, REGION_FACE, REGION_ARMS, REGION_BODY)

# Colours for previews (RGB).
REGION_COLORS = {
    BACKGROUND: (40, 40, 40),
    REGION_FACE: (235, 87, 87),
    REGION_HANDS: (242, 201, 76),
    REGION_ARMS: (39, 174, 96),
    REGION_BODY: (47, 128, 237),
}
