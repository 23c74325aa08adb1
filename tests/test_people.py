"""``--person``: parsing, the people of a frame, the first choice, following, and the kept driver pixels."""

from __future__ import annotations

import numpy as np
import pytest

from retarget.errors import InputError, UsageError
from retarget.pipeline.people import (
    People,
    PersonChoice,
    PersonTracker,
    describe_people,
    driver_tracking,
    find_people,
    first_choice,
    follow,
    keep_layers,
    numbers_from_left,
)
from retarget.pipeline.video import person_mask


def _iuv(h: int, w: int, rects: list[tuple[int, int, int, int]]) -> np.ndarray:
    """An IUV with a solid part-1 rectangle ``(x0, y0, x1, y1)`` per person."""
    iuv = np.zeros((h, w, 3), np.uint8)
    for x0, y0, x1, y1 in rects:
        iuv[y0:y1, x0:x1] = (1, 128, 128)
    return iuv


@pytest.mark.parametrize("text, rule, index", [("largest", "largest", None), ("Left", "left", None),
                                               ("right", "right", None), ("center", "center", None),
                                               ("centre", "center", None), ("1", "index", 1), (" 12 ", "index", 12),
                                               (3, "index", 3)])
def test_parse_accepts_rules_and_numbers_from_1(text, rule, index):
    choice = PersonChoice.parse(text)
    assert (choice.rule, choice.index) == (rule, index)
    assert str(choice) == (str(index) if index else rule)


@pytest.mark.parametrize("text", ["0", "-1", "middle", "1.5", "", "2nd", "first"])
def test_parse_rejects_everything_else_in_one_line(text):
    with pytest.raises(UsageError) as info:
        PersonChoice.parse(text)
    message = str(info.value)
    assert "\n" not in message and message.startswith("--person")
    assert ("numbered from 1" in message) if text in ("0", "-1") else ("largest, center, left, right" in message)


def test_one_box_is_the_person_mask_the_pipeline_always_used():
    iuv = _iuv(40, 60, [(10, 5, 20, 35), (45, 10, 50, 30)])  # a second blob outside the box
    box = np.array([9, 4, 21, 36], float)
    people = find_people(iuv, box[None])
    assert len(people) == 1 and np.array_equal(people.boxes[0], box)
    assert np.array_equal(people.mask(0), person_mask(iuv, box))
    assert not people.others(0).any() and keep_layers(people, 0) is None


def test_boxes_split_the_pixels_of_people_joined_by_an_arm():
    # two people; the left one's arm (a strip) reaches into the right one's box
    iuv = _iuv(50, 80, [(10, 5, 25, 45), (25, 20, 45, 23), (40, 5, 60, 45)])
    boxes = np.array([[9, 4, 26, 46], [39, 4, 61, 46]], float)
    people = find_people(iuv, boxes)
    assert len(people) == 2
    fg = iuv[..., 0] > 0
    in_a_box = np.zeros_like(fg)
    in_a_box[4:46, 9:26] = in_a_box[4:46, 39:61] = True
    assert (people.labels >= 0)[fg & in_a_box].all() and not (people.labels >= 0)[~fg].any()
    assert (people.labels[20:23, 28:38] == -1).all()  # the arm between the boxes: nobody's
    # the arm makes one blob of both people: each box keeps its own pixels
    assert people.mask(0)[20, 12] and people.mask(1)[20, 50]
    assert people.mask(1)[21, 42]  # inside the right box only


def test_a_blob_mostly_in_two_boxes_goes_whole_to_its_only_owner_and_empty_boxes_are_dropped():
    iuv = _iuv(50, 90, [(10, 5, 25, 45), (50, 5, 61, 45)])
    # the right blob lies in both boxes except its last columns (only in box 1); by box centres alone
    # its left part would go to box 0
    boxes = np.array([[9, 4, 58, 46], [49, 4, 75, 46], [80, 0, 89, 10]], float)  # the third box: nobody
    people = find_people(iuv, boxes)
    assert len(people) == 2
    assert people.mask(0)[20, 12] and people.mask(1)[20, 60]
    assert people.mask(1)[20, 50]  # the whole blob
    assert people.mask(0).sum() == 15 * 40 and people.mask(1).sum() == 11 * 40


def test_overlapping_boxes_give_shared_pixels_to_the_nearer_centre():
    iuv = _iuv(40, 60, [(5, 5, 40, 35)])  # one blob, two overlapping boxes, both with own pixels
    boxes = np.array([[4, 4, 26, 36], [20, 4, 41, 36]], float)
    people = find_people(iuv, boxes)
    assert people.mask(0)[20, 10] and people.mask(1)[20, 38]
    assert people.mask(0)[20, 21] and people.mask(1)[20, 26]  # x 20..25 shared: centres at 15 and 30.5


def test_merged_sidecar_iuv_splits_into_blobs_with_specks_kept_by_the_nearest_person():
    iuv = _iuv(60, 100, [(10, 5, 22, 55), (24, 30, 25, 31),  # a one-pixel speck near the left person
                         (60, 10, 75, 55), (58, 20, 59, 22)])
    one_box = np.array([[10, 5, 75, 55]], float)
    assert len(find_people(iuv, one_box)) == 1  # a model's single box: one person
    people = find_people(iuv, one_box, split_blobs=True)
    assert len(people) == 2
    assert people.labels[30, 24] == people.labels[20, 15] == 0 and people.labels[21, 58] == people.labels[20, 65] == 1
    assert people.boxes[0].tolist() == [10, 5, 25, 55]
    # one person with a limb a pixel apart stays one person
    single = _iuv(60, 100, [(10, 5, 22, 40), (10, 41, 22, 55)])
    assert len(find_people(single, one_box, split_blobs=True)) == 1


def test_first_choice_rules_and_a_number_too_large_lists_the_people():
    boxes = np.array([[100, 10, 130, 90], [10, 20, 30, 60], [50, 0, 75, 100]], float)  # right, left, middle
    people = People(boxes, np.zeros((100, 200), np.int16))
    assert numbers_from_left(people) == ["3", "1", "2"]
    pick = {r: first_choice(people, PersonChoice.parse(r), 0, 200, 100) for r in
            ("largest", "left", "right", "center", "1", "2", "3")}
    assert pick == {"largest": 2, "left": 1, "right": 0, "center": 0, "1": 1, "2": 2, "3": 0}
    with pytest.raises(InputError) as info:
        first_choice(people, PersonChoice.parse("4"), 7, 200, 100)
    message = str(info.value)
    assert "\n" not in message and "frame 7" in message and "has 3 people" in message
    assert describe_people(people) in message and "1 at x 10-30 (40 px tall)" in message and "choose 1..3" in message


def test_tracker_follows_the_chosen_person_not_the_biggest_and_refinds_by_distance():
    tracker = PersonTracker(PersonChoice.parse("left"), 200, 100)
    left, right = [10, 10, 30, 90], [120, 0, 180, 100]
    frame = People(np.array([right, left], float), np.zeros((100, 200), np.int16))
    assert tracker.step(frame, 0) == 1
    moved = People(np.array([[14, 10, 34, 90], right], float), np.zeros((100, 200), np.int16))
    assert tracker.step(moved, 1) == 0
    jumped = People(np.array([right, [30, 10, 50, 90]], float), np.zeros((100, 200), np.int16))  # IoU 0.11
    assert tracker.step(jumped, 2) == 1  # nearest centre within a box width
    gone = People(np.array([right], float), np.zeros((100, 200), np.int16))
    assert tracker.step(gone, 3) is None  # not the right person instead
    assert tracker.step(People(np.zeros((0, 4)), np.zeros((100, 200), np.int16)), 4) is None
    # the default keeps its old rule: the largest box when the overlap is lost
    assert follow(np.array([right], float), np.array(left, float), PersonChoice()) == 0


def test_keep_layers_put_a_lower_standing_person_in_front_and_never_the_chosen_one():
    iuv = _iuv(100, 120, [(10, 10, 30, 80), (25, 20, 50, 95), (80, 5, 100, 70)])
    boxes = np.array([[10, 10, 30, 80], [30, 20, 50, 95], [80, 5, 100, 70]], float)
    people = find_people(iuv, boxes)
    behind, front = keep_layers(people, 0)
    assert front[50, 40] and not behind[50, 40]  # feet lower than the chosen one's: in front
    assert behind[40, 90] and not front[40, 90]
    assert not (behind | front)[people.mask(0)].any()
    assert front[50, 51] and not front[50, 52]  # grown by 2 pixels (2.5 % of the height, at least 2)
    everyone_behind, nobody_front = keep_layers(people, None)
    assert everyone_behind[people.labels >= 0].all() and not nobody_front.any()


def test_driver_tracking_only_for_the_default_choice():
    assert driver_tracking(True, "largest") and not driver_tracking(False, "largest")
    assert not driver_tracking(True, "left") and not driver_tracking(True, "2")


def test_shared_pixels_go_to_the_most_confident_box_unless_their_body_part_says_otherwise():
    iuv = _iuv(40, 60, [(5, 5, 40, 35)])  # one blob, two overlapping boxes (x 20..25 in both)
    boxes = np.array([[4, 4, 26, 36], [20, 4, 41, 36]], float)
    assert find_people(iuv, boxes).mask(0)[20, 21]  # no scores: the nearer centre
    people = find_people(iuv, boxes, scores=np.array([0.5, 0.9]))
    assert people.mask(1)[20, 21] and people.mask(1)[20, 20] and people.mask(0)[20, 10]  # the IUV's top person
    # a part (I = 5) of the left person reaching into the shared columns stays the left person's
    iuv[10:15, 10:24, 0] = 5
    people = find_people(iuv, boxes, scores=np.array([0.5, 0.9]))
    assert people.mask(0)[12, 23] and people.mask(1)[20, 21]
